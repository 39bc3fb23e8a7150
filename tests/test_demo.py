"""The README's main command: the demo comes up, shows live values, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.support import free_port, wait_until
from tests.support.node import PIO
from worker.processes import group_members, pid_alive


def test_demo_runs_and_ctrl_c_stops_everything(tmp_path):
    broker_port, admin_port = free_port(), free_port()
    topology = tmp_path / "topology.yaml"
    topology.write_text(
        textwrap.dedent(
            f"""\
            broker: {{host: 127.0.0.1, port: {broker_port}}}
            units:
              simdemo: {{hardware: sim, admin_port: {admin_port}, time_scale: 10}}
            experiments:
              demo:
                units: [simdemo]
                jobs:
                  stirring: {{target_rpm: 450}}
            """
        )
    )
    env = {**os.environ, "PIO_STATE_DIR": str(tmp_path / "state")}
    log = open(tmp_path / "demo.out", "w+")
    demo = subprocess.Popen([sys.executable, "-m", "worker.demo", "--topology", str(topology)], env=env, stdout=log, stderr=subprocess.STDOUT)
    pgid = None
    try:
        def status_ok():
            r = subprocess.run([PIO, "--topology", str(topology), "--unit", "simdemo", "status", "--json"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and '"stirring": "ready"' in r.stdout

        wait_until(status_ok, 30, 0.2, "demo node up with stirring ready (from its desired state)")
        wait_until(lambda: "RPM" in (tmp_path / "demo.out").read_text(), 30, 0.2, "live values printed")
        import json

        pgid = json.loads((tmp_path / "state" / "simdemo" / "node.json").read_text())["pgid"]
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
        out = (tmp_path / "demo.out").read_text()
        assert "node simdemo stopped" in out and "leader stopped" in out
        # The node logged in with its own broker credentials; the broker refuses anonymous clients.
        assert (tmp_path / "state" / "simdemo" / "broker_credentials.json").exists()
        assert not (tmp_path / "state" / "leader" / "leader.json").exists()
        assert group_members(pgid) == []
        assert not (tmp_path / "state" / "simdemo" / "node.json").exists()
        probe = subprocess.run([PIO, "--topology", str(topology), "--unit", "simdemo", "status"], env=env, capture_output=True, text=True)
        assert probe.returncode != 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if pgid is not None:
            from worker.processes import stop_group

            stop_group(pgid)
        log.close()
        assert not pid_alive(demo.pid)
