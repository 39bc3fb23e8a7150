"""How many units one leader carries: `pios apply` convergence time and the leader's CPU and memory
for N simulated units (default N = 4, 16, 32).

Why: a lab grows from a few units to dozens; the leader (its daemon with ingest, deployer, ClusterWatch
and dashboard, plus its Mosquitto) runs on a Raspberry Pi. For each N this starts a real leader
(`pios leader start`, its own secured broker) and N real node processes on this machine (each with its
own broker login), applies a topology that runs stirring and od_reading on every unit, and measures:

- apply -> converged: from `pios apply` until `pios status --json` says every unit is in sync;
- the leader daemon's and its Mosquitto's CPU (% of one core) over a steady 20 s window after
  convergence, while every unit streams its readings into the leader's database;
- their resident memory (RSS) at the end of that window.

The units share the leader's 2 cores here, so the figures are an upper bound for a leader on its own Pi.

Run: ``.venv/bin/python bench/cluster_bench.py [--units 4 16 32] [--window 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tests.support.broker import free_port  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402
from worker.processes import group_members, stop_group  # noqa: E402

BIN = os.path.dirname(sys.executable)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def topology(n: int, port: int, admin_ports: list[int], web_port: int, with_jobs: bool) -> str:
    units = "\n".join(f"  sim{i:02d}: {{hardware: sim, admin_port: {p}}}" for i, p in enumerate(admin_ports, 1))
    names = ", ".join(f"sim{i:02d}" for i in range(1, n + 1))
    jobs = "\n    jobs:\n      stirring: {target_rpm: 500}\n      od_reading: {interval: 5}" if with_jobs else ""
    return textwrap.dedent(f"""\
        cluster: bench
        broker: {{host: 127.0.0.1, port: {port}}}
        leader: {{web_port: {web_port}}}
        units:
        """) + units + f"\nexperiments:\n  bench:\n    units: [{names}]{jobs}\n"


def run_one(n: int, window: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"cluster-bench-{n}-"))
    env = {**os.environ, "PIO_STATE_DIR": str(root / "state")}
    port, web = free_port(), free_port()
    admin_ports = [free_port() for _ in range(n)]
    empty, full = root / "empty.yaml", root / "topology.yaml"
    empty.write_text(topology(n, port, admin_ports, web, with_jobs=False))
    full.write_text(topology(n, port, admin_ports, web, with_jobs=True))

    def tool(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[1:])} failed: {result.stderr.strip()}")
        return result

    groups: list[int] = []
    try:
        tool(f"{BIN}/pios", "leader", "start", "--topology", str(empty), "--unit-credentials")
        leader = json.loads((root / "state" / "leader" / "leader.json").read_text())
        for i in range(1, n + 1):
            tool(f"{BIN}/pio", "--topology", str(full), "--unit", f"sim{i:02d}", "node", "start")
            pid = json.loads((root / "state" / f"sim{i:02d}" / "node.json").read_text()).get("pgid")
            if pid:
                groups.append(pid)

        def rows() -> list[dict]:
            return json.loads(tool(f"{BIN}/pios", "status", "--topology", str(full), "--json").stdout)

        t0 = time.perf_counter()
        tool(f"{BIN}/pios", "apply", str(full))
        wait_until(lambda: all(r["in_sync"] and r["actual_jobs"] == ["od_reading", "stirring"] for r in rows()),
                   timeout=300, interval=0.5, message=f"{n} units in sync")
        converged = time.perf_counter() - t0

        pids = {"leader": leader["pid"], "mosquitto": leader["broker_pid"]}
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        start = time.perf_counter()
        time.sleep(window)  # the measurement window itself, not a wait for a condition
        elapsed = time.perf_counter() - start
        cpu = {k: 100 * (cpu_seconds(p) - before[k]) / elapsed for k, p in pids.items()}
        return {
            "units": n, "converge_s": converged,
            "leader_cpu_pct": cpu["leader"], "mosquitto_cpu_pct": cpu["mosquitto"],
            "leader_rss_mb": rss_mb(pids["leader"]), "mosquitto_rss_mb": rss_mb(pids["mosquitto"]),
        }
    finally:
        for i in range(1, n + 1):
            subprocess.run([f"{BIN}/pio", "--topology", str(full), "--unit", f"sim{i:02d}", "node", "stop"], env=env,
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        for pgid in groups:
            if group_members(pgid):
                stop_group(pgid, grace=2.0)
        subprocess.run([f"{BIN}/pios", "leader", "stop"], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--window", type=float, default=20.0, help="seconds of steady state to measure CPU over")
    args = parser.parse_args()
    print(f"{'units':>5} {'apply->in sync':>15} {'leader CPU':>11} {'leader RSS':>11} {'broker CPU':>11} {'broker RSS':>11}")
    for n in args.units:
        r = run_one(n, args.window)
        print(f"{n:>5} {r['converge_s']:>13.1f} s {r['leader_cpu_pct']:>9.1f} % {r['leader_rss_mb']:>8.0f} MB "
              f"{r['mosquitto_cpu_pct']:>9.1f} % {r['mosquitto_rss_mb']:>8.1f} MB", flush=True)


if __name__ == "__main__":
    main()
