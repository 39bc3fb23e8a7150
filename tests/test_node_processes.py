"""The node's processes: loopback-only sockets, no orphans after a stop or a crash, one node per unit."""

from __future__ import annotations

import ipaddress
import os
import signal

from tests.support import wait_until
from worker.processes import pid_alive


def _listening_inodes() -> dict[int, str]:
    """inode -> local address of every listening TCP socket on this machine."""
    out: dict[int, str] = {}
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if state != "0A":  # LISTEN
                    continue
                host_hex, port_hex = local.split(":")
                raw = bytes.fromhex(host_hex)
                if v6:
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    host = str(ipaddress.IPv6Address(raw))
                else:
                    host = str(ipaddress.IPv4Address(raw[::-1]))
                out[inode] = f"{host}:{int(port_hex, 16)}"
    return out


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def test_every_listening_socket_of_a_running_node_is_on_loopback(node):
    node.pio("run", "stirring")
    pids = node.processes() + [node.daemon_pid]
    assert len(pids) >= 6  # admin, logger, supervisor, pwm driver, bridge, stirring
    listening = _listening_inodes()
    found = {pid: [listening[i] for i in _socket_inodes(pid) if i in listening] for pid in pids}
    assert any(found.values()), "expected the actor processes to listen somewhere"
    for pid, addresses in found.items():
        for address in addresses:
            host = address.rsplit(":", 1)[0]
            assert ipaddress.ip_address(host).is_loopback, f"pid {pid} listens on {address}"
    admin = {a for addrs in found.values() for a in addrs if a.endswith(f":{node.admin_port}")}
    assert admin == {f"127.0.0.1:{node.admin_port}"}


def test_node_stop_leaves_no_process_behind(node):
    node.pio("run", "stirring")
    members = node.processes()
    assert members
    daemon = node.daemon_pid
    out = node.pio("node", "stop").stdout
    assert "stopped" in out
    assert not pid_alive(daemon)
    assert node.processes() == []
    assert node.pio("status", check=False).returncode != 0


def test_crash_of_the_root_processes_then_start_cleans_up_orphans_and_resumes(node):
    node.pio("run", "stirring", "--target-rpm", "420")
    old_members = node.processes()
    admin = node.admin_pid
    os.kill(node.daemon_pid, signal.SIGKILL)
    os.kill(admin, signal.SIGKILL)
    wait_until(lambda: not pid_alive(admin), 5, message="admin gone")
    orphans = [p for p in old_members if pid_alive(p)]
    assert orphans, "the actors outlive their admin (this is the trap being tested)"

    result = node.pio("node", "start")
    assert "started" in result.stdout
    node._remember()
    assert not any(pid_alive(p) for p in orphans), "orphans of the crashed run were cleaned up"
    # The node was lost, not stopped: its job comes back as it was.
    job = node.wait_job_state("stirring", "ready")
    assert job["settings"]["target_rpm"] == 420.0
    assert set(node.processes()).isdisjoint(old_members)


def test_a_clean_stop_starts_empty_next_time(node):
    node.pio("run", "stirring")
    node.pio("node", "stop")
    node.start()
    assert node.pio_json("jobs", "list") == []


def test_daemon_rebuilds_a_lost_actor_system_and_resumes_its_jobs(node):
    node.pio("run", "stirring", "--target-rpm", "480")
    members = node.processes()
    old_pgid = node.pgid
    os.kill(node.admin_pid, signal.SIGKILL)  # the admin alone: every actor is orphaned
    wait_until(lambda: not any(pid_alive(p) for p in members), 20, message="orphans stopped by the daemon")
    wait_until(lambda: (info := node.pidfile()) and info["pgid"] != old_pgid, 20, message="a new actor system")
    node._remember()
    job = node.wait_job_state("stirring", "ready")
    assert job["settings"]["target_rpm"] == 480.0
    assert "the actor system was lost" in node.log_text()


def test_a_second_start_for_the_same_unit_is_refused(node):
    again = node.pio("node", "start", check=False)
    assert again.returncode != 0
    assert "already running" in again.stderr
    assert node.pio("status", check=False).returncode == 0


def test_two_nodes_on_one_machine(node_factory):
    a = node_factory(unit="sim01").start()
    b = node_factory(unit="sim02").start()
    a.pio("run", "stirring", "--target-rpm", "300")
    b.pio("run", "stirring", "--target-rpm", "700")
    assert a.job("stirring")["settings"]["target_rpm"] == 300.0
    assert b.job("stirring")["settings"]["target_rpm"] == 700.0
    assert a.pio_json("status")["unit"] == "sim01"
    assert b.pio_json("status")["unit"] == "sim02"


def test_a_pump_run_cut_by_a_lost_node_is_not_redone_when_it_comes_back(node):
    # A power cut in the middle of `remove_waste --duration 600`: a one-shot action is not redone.
    node.pio("run", "stirring")
    node.pio("run", "remove_waste", "--duration", "600")
    admin = node.admin_pid
    os.kill(node.daemon_pid, signal.SIGKILL)
    os.kill(admin, signal.SIGKILL)
    wait_until(lambda: not pid_alive(admin), 5, message="admin gone")

    node.pio("node", "start")
    node._remember()
    node.wait_job_state("stirring", "ready")  # wanted jobs come back...
    assert node.job("remove_waste") is None  # ...one-shot actions do not
    assert node.pio_json("sim", "truth")["pwm"]["waste"] == 0
