"""The leader daemon: owns the secured broker, publishes every unit's desired state, watches the units.

``pios leader start`` runs this as a background process (``--foreground`` for systemd); ``pios leader
stop`` ends it with SIGTERM, which stops the broker too. Its files are under the leader's state dir
(``$PIO_STATE_DIR/leader``): ``credentials.json``, ``broker/`` (config, ACL, passwords, persistence, log),
``leader.json`` (pid, ready, web_url: the dashboard), ``leader.log`` (ClusterWatch's and the ingest's lines), ``cluster.json`` (the
last view of every unit, for ``pios leader status``), ``pioreactor.sqlite`` (the database the ingest fills
from the units' outboxes) and ``ingest.json`` (the ingest's health figures, for ``pios status``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from actors import topics
from actors.clock import utc_iso
from actors.files import atomic_write
from actors.topology import TopologyError, load
from leader import credentials
from leader.broker import BrokerError, ManagedBroker
from leader.cluster_watch import ClusterWatch
from leader.database import DatabaseError, default_path
from leader.deployer import desired_states
from leader.ingestor import Ingestor

PID_FILE = "leader.json"
LOG_FILE = "leader.log"
CLUSTER_FILE = "cluster.json"
INGEST_FILE = "ingest.json"


def _write_json(path: str, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2))


class Leader:
    def __init__(self, topology_path: str, leader_dir: str, unit_credentials: bool) -> None:
        self.topology = load(topology_path)
        self.dir = leader_dir
        os.makedirs(leader_dir, exist_ok=True)
        self.secrets = credentials.ensure(leader_dir, self.topology.units)
        if unit_credentials:  # units run on this machine (the demo): give each node its own login
            credentials.write_unit_files(self.secrets, self.topology.units)
        self.watch = ClusterWatch(self.topology.units)
        self.broker = ManagedBroker(self.topology, leader_dir)
        self.ingestor = Ingestor(
            default_path(leader_dir), self.topology.broker.host, self.topology.broker.port,
            credentials.LEADER, self.secrets[credentials.LEADER], log=self.log,
        )
        self.stopping = threading.Event()
        self.client: Any = None

    def log(self, line: str) -> None:
        with open(os.path.join(self.dir, LOG_FILE), "a", encoding="utf-8") as f:
            f.write(f"{utc_iso(time.time())} {line}\n")

    def run(self) -> None:
        self.broker.start()
        self.log(f"INFO broker up on {self.topology.broker.host}:{self.topology.broker.port}")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pioactors-leader", protocol=mqtt.MQTTv5)
        client.username_pw_set(credentials.LEADER, self.secrets[credentials.LEADER])
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self.client = client
        client.connect(self.topology.broker.host, self.topology.broker.port, keepalive=30)
        client.loop_start()
        self.ingestor.start()
        self._sync_experiments()
        web = self._start_web()
        _write_json(os.path.join(self.dir, PID_FILE), {"pid": os.getpid(), "ready": True, "broker_pid": self.broker.pid,
                                                       "web_url": web.url if web else None})
        try:
            while not self.stopping.wait(1.0):
                _write_json(os.path.join(self.dir, CLUSTER_FILE), {"updated_at": utc_iso(time.time()), "units": self.watch.snapshot()})
                _write_json(os.path.join(self.dir, INGEST_FILE), self.ingestor.health())
        finally:
            if web is not None:
                web.stop()
            self.ingestor.stop()
            client.loop_stop()
            client.disconnect()
            self.broker.stop()
            self.log("INFO leader stopped")

    def _start_web(self) -> Any:
        """The dashboard and HTTP API (leader/web) on leader.address:leader.web_port. A dashboard that
        cannot start (port taken) is logged; the broker and the ingest go on without it."""
        try:
            from leader.web.app import make_app, run_in_thread

            app = make_app(self.dir, self.topology, ingest_health=self.ingestor.health, log_line=self.log)
            server = run_in_thread(app, self.topology.leader.address, self.topology.leader.web_port)
        except Exception as e:
            self.log(f"ERROR the dashboard did not start: {e}")
            return None
        self.log(f"INFO dashboard at {server.url}")
        return server

    def _sync_experiments(self) -> None:
        """The topology's experiments and unit assignments, into the database (see experiments.sync_topology)."""
        from leader import database, experiments

        conn = database.connect(default_path(self.dir))
        try:
            for line in experiments.sync_topology(conn, self.topology, utc_iso(time.time())):
                self.log(f"INFO {line}")
        except experiments.ExperimentError as e:
            self.log(f"ERROR could not record the topology's experiments: {e}")
        finally:
            conn.close()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            self.log(f"ERROR the broker refused the leader's login: {reason_code}")
            return
        client.subscribe([(topics.node_topic("+", topics.STATE), 1), (topics.actual_topic("+"), 1)])
        # Deployer: every unit's desired state from the topology, retained (only the leader may write it).
        for unit, desired in desired_states(self.topology, issued_at=utc_iso(time.time())).items():
            client.publish(topics.desired_topic(unit), desired.payload(), qos=1, retain=True)
        self.log(f"INFO published the desired state of {len(self.topology.units)} unit(s)")

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        line = self.watch.observe(msg.topic, msg.payload.decode(errors="replace"), utc_iso(time.time()))
        if line:
            self.log(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="leader-daemon")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--leader-dir", default=None)
    parser.add_argument("--unit-credentials", action="store_true", help="write each unit's broker login into its state dir")
    args = parser.parse_args(argv)
    leader_dir = args.leader_dir or credentials.default_leader_dir()
    try:
        leader = Leader(args.topology, leader_dir, args.unit_credentials)
    except (TopologyError, credentials.CredentialsError, DatabaseError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: leader.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: leader.stopping.set())
    try:
        leader.run()
    except BrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        try:
            os.unlink(os.path.join(leader_dir, PID_FILE))
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
