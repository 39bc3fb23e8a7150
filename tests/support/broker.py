"""A real Mosquitto broker for tests, on a free loopback port with its own config, log and
persistence directory (so `restart()` keeps retained messages). Never port 1883."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from leader.broker import port_accepts

SYSTEM_PORT = 1883  # Debian's system mosquitto service may own this; we never touch it.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_running: "weakref.WeakSet[Mosquitto]" = weakref.WeakSet()


def mosquitto_binary() -> str:
    """Path to the mosquitto executable (PATH first, then /usr/sbin). Raises if it is missing."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access("/usr/sbin/mosquitto", os.X_OK):
        return "/usr/sbin/mosquitto"
    raise RuntimeError("mosquitto not found (PATH or /usr/sbin/mosquitto); run scripts/bootstrap.sh "
                       "or: apt-get install -y mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (bind to port 0, read it, close). Never 1883.

    Another process may take it before the caller binds it; callers that can detect that should
    retry with a new port.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_PORT:
            return port


_port_accepts = port_accepts  # the leader's own probe: something accepts TCP connections there


class MosquittoError(RuntimeError):
    pass


class Mosquitto:
    """One mosquitto process. `start()` picks a free port on first start; `restart()` keeps it.

    Usable as a context manager. All files live in a private temp dir (`workdir`), removed by
    `cleanup()` (the context manager calls it; the pytest fixture calls it too).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        if port == SYSTEM_PORT:
            raise ValueError("refusing to use port 1883 (the system broker's port)")
        self.host = host
        self._fixed_port = port
        self.port: int | None = port
        self.workdir = Path(tempfile.mkdtemp(prefix="mosquitto-test-"))
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.persistence_dir = self.workdir / "persistence"
        self.persistence_dir.mkdir()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "Mosquitto":
        """Spawn mosquitto and wait (deadline 10 s) until it accepts TCP connections.

        On the first start a free port is chosen, retrying with a new port if another process took
        it in the meantime. Raises MosquittoError with the log tail on failure.
        """
        if self.running:
            return self
        attempts = 1 if self.port is not None else 5
        last_error: MosquittoError | None = None
        for _ in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            try:
                self._start_on(port)
                self.port = port
                return self
            except MosquittoError as exc:
                last_error = exc
                if not self._port_collision():
                    raise
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence db), wait up to 5 s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _running.discard(self)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> "Mosquitto":
        """Stop, then start again on the SAME port (retained messages survive via persistence)."""
        self.stop()
        if self.port is None:
            return self.start()
        self._start_on(self.port, wait_for_port_free=True)
        return self

    def cleanup(self) -> None:
        """Stop and delete the work dir (config, log, persistence)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<Mosquitto {self.host}:{self.port} {state}>"

    # -- diagnostics -----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------------

    def _write_config(self, port: int) -> None:
        lines = [
            f"listener {port} {self.host}",
            "allow_anonymous true",
            # As the leader's broker does: no Nagle delay on small MQTT packets (else ~40 ms stalls).
            "set_tcp_nodelay true",
            "persistence true",
            # Trailing slash: mosquitto concatenates this with the db file name.
            f"persistence_location {self.persistence_dir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto would drop to user "mosquitto", which cannot write our temp dir.
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _start_on(self, port: int, wait_for_port_free: bool = False) -> None:
        if port == SYSTEM_PORT:
            raise ValueError("refusing to use port 1883")
        deadline = time.monotonic() + START_TIMEOUT
        if wait_for_port_free:
            # After our own stop the port should be free at once; be patient if the kernel lags.
            while _port_accepts(self.host, port) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._write_config(port)
        self._log_offset = self._log_size()
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            log.close()
        _running.add(self)
        proc = self._proc
        while True:
            if proc.poll() is not None:
                self._proc = None
                _running.discard(self)
                raise MosquittoError(
                    f"mosquitto exited with code {proc.returncode} while starting on "
                    f"{self.host}:{port}; log tail:\n{self.log_tail()}")
            # Ready = our process logged that it is running (so the listener is ours, not some
            # other process that grabbed the port) and the port accepts TCP connections.
            if " running" in self._log_since(self._log_offset) and _port_accepts(self.host, port):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise MosquittoError(
                    f"mosquitto did not accept connections on {self.host}:{port} within "
                    f"{START_TIMEOUT:g}s; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def _port_collision(self) -> bool:
        return "Address already in use" in self._log_since(self._log_offset)


@atexit.register
def _stop_all() -> None:
    """Last resort: never leave a broker behind when the interpreter exits."""
    for broker in list(_running):
        try:
            broker.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
