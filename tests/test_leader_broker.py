"""The leader's broker: generated credentials, password file and ACL, against the real Mosquitto that
`ManagedBroker` starts (its own port, files in the test's tmp dir), plus a real node using its credentials."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import topics
from actors.topology import load
from leader import credentials
from leader.broker import BrokerPaths, ManagedBroker, acl_text, broker_config
from tests.support.broker import free_port
from tests.support.waiting import wait_until

PIOS = os.path.join(os.path.dirname(sys.executable), "pios")
NOT_AUTHORIZED = 0x87
ACCEPTED = 0x80  # MQTT 5 PUBACK codes below this are successes (0x10: accepted, no subscriber yet)


# --- a plain MQTT 5 client with credentials, recording messages and PUBACK reason codes --------------


class Client:
    def __init__(self, host: str, port: int, username: str | None, password: str | None) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.pubacks: dict[int, int] = {}
        self.connack: int | None = None
        self._lock = threading.Lock()
        self._subscribed = 0
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda *_: self._count_suback()
        self.c.connect_async(host, port, keepalive=10)
        self.c.loop_start()
        wait_until(lambda: self.connack is not None, 10.0, message="no CONNACK from the broker")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connack = reason_code.value
        if reason_code.is_failure:
            client.disconnect()  # no reconnect attempts with credentials the broker refused

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self.pubacks[mid] = reason_code.value

    def _count_suback(self) -> None:
        with self._lock:
            self._subscribed += 1

    @property
    def accepted(self) -> bool:
        return self.connack == 0

    def subscribe(self, topic_filter: str) -> None:
        before = self._subscribed
        self.c.subscribe(topic_filter, qos=1)
        wait_until(lambda: self._subscribed > before, 10.0, message=f"no SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: str, retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (below 0x80 = accepted, 0x87 = not authorized)."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self.pubacks, 10.0, message=f"no PUBACK for {topic}")
        return self.pubacks[info.mid]

    def payloads(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def topics_seen(self) -> list[str]:
        with self._lock:
            return [t for t, _, _ in self.messages]

    def wait_for(self, topic: str, payload: str) -> None:
        wait_until(lambda: payload in self.payloads(topic), 10.0, message=f"{payload!r} never arrived on {topic}: {self.messages}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A topology with sim01 and sim02, and the leader's broker started from it on a free port."""
    port = free_port()
    topo = tmp_path / "topology.yaml"
    topo.write_text(
        textwrap.dedent(
            f"""\
            broker: {{host: 127.0.0.1, port: {port}}}
            units:
              sim01: {{hardware: sim, admin_port: {free_port()}, time_scale: 50}}
              sim02: {{hardware: sim, admin_port: {free_port()}}}
            experiments:
              demo: {{units: [sim01, sim02]}}
            """
        )
    )
    state_root = tmp_path / "state"
    leader_dir = state_root / "leader"
    broker = ManagedBroker(load(str(topo)), str(leader_dir))
    clients: list[Client] = []

    def client(identity: str | None, password: str | None = None) -> Client:
        if identity is not None and password is None:
            password = credentials.load(str(leader_dir))[identity]
        c = Client("127.0.0.1", port, identity, password)
        clients.append(c)
        return c

    try:
        broker.start()
        yield {"broker": broker, "port": port, "topology": topo, "state_root": state_root, "leader_dir": leader_dir, "client": client}
    finally:
        for c in clients:
            c.close()
        broker.stop()


def quiet_after(receiver: Client, sender: Client, marker_topic: str) -> None:
    """Wait until a marker sent by `sender` after its other messages reaches `receiver`.

    The broker keeps one publisher's messages in order for a subscriber, so anything refused earlier that
    had been let through would have arrived before the marker: no fixed sleep needed to prove absence.
    """
    marker = uuid.uuid4().hex
    assert sender.publish(marker_topic, marker) < ACCEPTED
    receiver.wait_for(marker_topic, marker)


# --- credentials -------------------------------------------------------------------------------------


def test_credentials_are_generated_once_kept_and_follow_the_topology(tmp_path: Path) -> None:
    leader_dir = str(tmp_path / "leader")
    first = credentials.ensure(leader_dir, ["sim01", "sim02"])
    assert set(first) == {"leader", "sim01", "sim02"}
    assert len(set(first.values())) == 3 and all(len(p) >= 30 for p in first.values())
    path = Path(credentials.credentials_path(leader_dir))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == first

    assert credentials.ensure(leader_dir, ["sim01", "sim02"]) == first  # idempotent
    grown = credentials.ensure(leader_dir, ["sim01", "sim02", "sim03"])
    assert {k: grown[k] for k in first} == first and grown["sim03"] not in first.values()
    shrunk = credentials.ensure(leader_dir, ["sim02", "sim03"])
    assert shrunk == {"leader": first["leader"], "sim02": first["sim02"], "sim03": grown["sim03"]}

    written = credentials.write_unit_files(shrunk, ["sim02"], state_root=str(tmp_path / "state"))
    unit_file = Path(written[0])
    assert unit_file == tmp_path / "state" / "sim02" / "broker_credentials.json"
    assert json.loads(unit_file.read_text()) == {"username": "sim02", "password": first["sim02"]}
    assert stat.S_IMODE(unit_file.stat().st_mode) == 0o600


def test_credentials_refuse_a_unit_named_leader_and_unusable_names(tmp_path: Path) -> None:
    with pytest.raises(credentials.CredentialsError, match="leader's broker identity"):
        credentials.ensure(str(tmp_path), ["leader"])
    with pytest.raises(credentials.CredentialsError, match="cannot be a broker user name"):
        credentials.ensure(str(tmp_path), ["sim#1"])
    assert not os.path.exists(credentials.credentials_path(str(tmp_path)))  # nothing written


def test_a_damaged_credentials_file_is_reported_not_replaced(tmp_path: Path) -> None:
    path = Path(credentials.credentials_path(str(tmp_path)))
    path.write_text("{not json")
    with pytest.raises(credentials.CredentialsError, match="credentials.json"):
        credentials.ensure(str(tmp_path), ["sim01"])
    assert path.read_text() == "{not json"


@given(
    existing=st.dictionaries(st.sampled_from(["leader", "a", "b", "c", "d"]), st.text(min_size=1, max_size=5)),
    units=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True),
)
def test_plan_keeps_issued_passwords_and_covers_exactly_the_topology(existing: dict[str, str], units: list[str]) -> None:
    fresh = iter(f"new{i}" for i in range(100))
    planned = credentials.plan(existing, units, lambda: next(fresh))
    assert set(planned) == {"leader", *units}
    for name, password in planned.items():
        assert password == existing[name] if name in existing else password.startswith("new")


def test_generated_acl_and_config() -> None:
    acl = acl_text(["sim02", "sim01"])
    assert "user leader\ntopic readwrite #" in acl
    assert "user sim01\ntopic read pioreactor/sim01/#\ntopic read pioreactor/$broadcast/#" in acl
    assert acl.index("user sim01") < acl.index("user sim02")
    assert f"pattern deny {topics.desired_topic('%u')}" in acl
    assert f"pattern deny {topics.command_topic('%u')}" in acl
    assert "pattern write pioreactor/%u/#" in acl
    assert "pattern read" not in acl  # a pattern deny would hide the unit's own desired state from it

    topo = load_text("broker: {host: 127.0.0.1, port: 18883}\nunits: {sim01: {}}\n")
    paths = BrokerPaths.under("/var/lib/pio/leader")
    conf = broker_config(topo, paths, run_as_root=False).conf.splitlines()
    for line in ("listener 18883 127.0.0.1", "allow_anonymous false", "set_tcp_nodelay true", "persistence true",
                 "persistence_location /var/lib/pio/leader/broker/data/", "password_file /var/lib/pio/leader/broker/passwd",
                 "acl_file /var/lib/pio/leader/broker/acl", "log_dest file /var/lib/pio/leader/broker/mosquitto.log"):
        assert line in conf
    assert "user root" not in conf and "user root" in broker_config(topo, paths, run_as_root=True).conf.splitlines()


def load_text(text: str) -> Any:
    from actors.topology import parse

    return parse(text)


# --- the real broker ---------------------------------------------------------------------------------


def test_files_are_private_and_passwords_hashed(cluster: dict[str, Any]) -> None:
    paths: BrokerPaths = cluster["broker"].paths
    stored = credentials.load(str(cluster["leader_dir"]))
    passwd = Path(paths.passwd).read_text()
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == ["leader", "sim01", "sim02"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd.splitlines())  # PBKDF2-SHA512
    assert not any(p in passwd for p in stored.values())
    for path in (paths.passwd, paths.acl, paths.conf, credentials.credentials_path(str(cluster["leader_dir"]))):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert cluster["broker"].running


def test_anonymous_and_wrong_password_are_refused(cluster: dict[str, Any]) -> None:
    anonymous = cluster["client"](None)
    assert not anonymous.accepted
    wrong = cluster["client"]("sim01", "not-the-password")
    assert not wrong.accepted
    other_units = cluster["client"]("sim01", credentials.load(str(cluster["leader_dir"]))["sim02"])
    assert not other_units.accepted
    assert cluster["client"]("sim01").accepted


def test_a_unit_writes_its_own_topics_and_nothing_the_leader_reserves(cluster: dict[str, Any]) -> None:
    leader = cluster["client"]("leader")
    leader.subscribe("pioreactor/#")
    sim01 = cluster["client"]("sim01")
    od = topics.job_topic("sim01", "demo", "od_reading", "od1")
    assert sim01.publish(od, "0.51") < ACCEPTED
    leader.wait_for(od, "0.51")

    refused = [
        topics.set_topic("sim02", "demo", "stirring", "target_rpm"),
        topics.job_topic("sim02", "demo", "od_reading", "od1"),
        topics.desired_topic("sim01"),
        topics.command_topic("sim01"),
        topics.desired_topic("sim02"),
        topics.ingest_ack_topic("sim01"),  # a unit cannot forge the leader's receipt and prune unsaved data
        topics.outbox_topic("sim02"),  # nor pose as another unit's outbox
        "pioreactor/$broadcast/demo/stirring/target_rpm/set",
        "elsewhere/anything",
    ]
    for topic in refused:
        assert sim01.publish(topic, "evil", retain=True) == NOT_AUTHORIZED, topic
    quiet_after(leader, sim01, topics.node_topic("sim01", "marker"))
    assert not [t for t in leader.topics_seen() if t in refused]
    # Nothing was retained either: a new subscriber gets retained messages before a later marker.
    late = cluster["client"]("leader")
    late.subscribe("#")
    quiet_after(late, sim01, topics.node_topic("sim01", "marker"))
    assert not [t for t in late.topics_seen() if t in refused]
    # The leader itself may write every one of them.
    assert all(leader.publish(topic, "ok") < ACCEPTED for topic in refused)


def test_a_unit_reads_its_own_commands_desired_state_and_broadcasts_only(cluster: dict[str, Any]) -> None:
    leader = cluster["client"]("leader")
    desired = json.dumps({"generation": "abc", "experiment": "demo", "jobs": {}, "issued_at": "2024-01-01T00:00:00.000Z"})
    assert leader.publish(topics.desired_topic("sim01"), desired, retain=True) < ACCEPTED  # the leader writes desired
    sim01 = cluster["client"]("sim01")
    sim01.subscribe("pioreactor/#")
    sim01.wait_for(topics.desired_topic("sim01"), desired)  # retained, delivered on subscribe

    command = json.dumps({"id": uuid.uuid4().hex, "expires_at": 0, "action": "kill", "job": "stirring"})
    broadcast = "pioreactor/$broadcast/demo/stirring/target_rpm/set"
    for topic, payload in ((topics.command_topic("sim02"), command), (topics.job_topic("sim02", "demo", "x", "y"), "2"),
                           (topics.command_topic("sim01"), command), (broadcast, "300")):
        assert leader.publish(topic, payload) < ACCEPTED
    sim01.wait_for(topics.command_topic("sim01"), command)
    sim01.wait_for(broadcast, "300")
    quiet_after(sim01, leader, topics.node_topic("sim01", "marker"))
    assert not [t for t in sim01.topics_seen() if "/sim02/" in t]


def test_a_retained_desired_state_survives_a_broker_restart(cluster: dict[str, Any]) -> None:
    desired = json.dumps({"generation": "0123456789abcdef", "experiment": "demo", "jobs": {"stirring": {"target_rpm": "500"}},
                          "issued_at": "2024-01-01T00:00:00.000Z"})
    assert cluster["client"]("leader").publish(topics.desired_topic("sim01"), desired, retain=True) < ACCEPTED
    broker: ManagedBroker = cluster["broker"]
    old_pid = broker.pid
    broker.restart()
    assert broker.running and broker.pid != old_pid
    sim01 = cluster["client"]("sim01")
    sim01.subscribe(topics.desired_topic("sim01"))
    sim01.wait_for(topics.desired_topic("sim01"), desired)


def test_start_refuses_a_port_taken_by_another_process(cluster: dict[str, Any], tmp_path: Path) -> None:
    from leader.broker import BrokerError

    second = ManagedBroker(load(str(cluster["topology"])), str(tmp_path / "other-leader"))
    with pytest.raises(BrokerError, match=f"port {cluster['port']} .* already in use"):
        second.start()
    assert not second.running and cluster["broker"].running


def test_a_restarted_leader_stops_the_broker_an_earlier_leader_left_behind(cluster: dict[str, Any]) -> None:
    earlier: ManagedBroker = cluster["broker"]
    orphan = earlier.pid
    # A new leader process knows nothing of the earlier one but its files (the pid file).
    later = ManagedBroker(load(str(cluster["topology"])), str(cluster["leader_dir"]))
    try:
        later.start()
        assert later.running and later.pid != orphan
        earlier._proc.wait(timeout=10)  # type: ignore[union-attr]  # reaps it: it was stopped by `later`
        assert cluster["client"]("sim01").accepted
    finally:
        later.stop()
    assert not later.running


# --- a real node with its own credentials ------------------------------------------------------------


class _BrokerAddress:
    def __init__(self, port: int) -> None:
        self.host, self.port = "127.0.0.1", port


@pytest.fixture
def unit_node(cluster: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    from tests.support.node import Node

    node = Node(tmp_path / "node", _BrokerAddress(cluster["port"]), unit="sim01", time_scale=50.0)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.cleanup()
        assert not node.processes(), "actor processes left behind"


def test_a_node_connects_with_its_own_credentials(cluster: dict[str, Any], unit_node: Any) -> None:
    leader = cluster["client"]("leader")
    leader.subscribe("pioreactor/#")
    stored = credentials.load(str(cluster["leader_dir"]))
    credentials.write_unit_files(stored, ["sim01"], state_root=str(unit_node.state_dir))
    unit_node.start()
    leader.wait_for(topics.node_topic("sim01", topics.STATE), "ready")


def test_a_node_refuses_to_start_with_a_malformed_credentials_file(cluster: dict[str, Any], unit_node: Any) -> None:
    path = unit_node.state_dir / "sim01" / "broker_credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"username": "sim01"}')
    result = unit_node.pio("node", "start", check=False)
    assert result.returncode != 0
    assert str(path) in result.stderr and "password" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_a_credentials_file_the_node_cannot_get_in(cluster: dict[str, Any], unit_node: Any) -> None:
    """The topology names no user: on the secured broker such a node stays outside (and says so)."""
    unit_node.start()
    link = wait_until(lambda: "not authorized" in unit_node.log_text().lower() or "refused" in unit_node.log_text().lower(),
                      15.0, message="the node never reported the broker's refusal")
    assert link


# --- pios broker credentials -------------------------------------------------------------------------


def pios(env_state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIO_STATE_DIR": str(env_state)}
    return subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_pios_broker_credentials_prints_an_identity_and_refuses_unknown_ones(cluster: dict[str, Any]) -> None:
    stored = credentials.load(str(cluster["leader_dir"]))
    result = pios(cluster["state_root"], "broker", "credentials", "sim01")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sim01 {stored['sim01']}\n"
    as_json = pios(cluster["state_root"], "broker", "credentials", "leader", "--json")
    assert json.loads(as_json.stdout) == {"username": "leader", "password": stored["leader"]}

    unknown = pios(cluster["state_root"], "broker", "credentials", "sim99")
    assert unknown.returncode != 0 and unknown.stdout == ""
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert "sim99" in unknown.stderr and "leader, sim01, sim02" in unknown.stderr
