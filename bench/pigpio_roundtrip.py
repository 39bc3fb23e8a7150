"""Round-trip latency of a duty change through the real pigpio client, against the fake pigpiod.

Why: the PWM driver actor sets duties synchronously inside its message handler, so the cost of one
pigpio call bounds how fast it can serve pumps, heater and stirring. This measures the client's socket
round trips (one request + one response each) on loopback. The daemon here is the Python fake, so the
numbers are an upper bound for client + loopback + a Python server, not a Pi's ``pigpiod`` (C, on
ARM); run the same client calls on a Pi to compare. The fake runs twice: as a thread of this process
(it then shares the GIL with the client) and as a separate process (like the real daemon).

Run: ``.venv/bin/python bench/pigpio_roundtrip.py [-n 2000]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pigpio  # noqa: E402

from actors.hardware.pigpio_backend import PigpioPwmBackend  # noqa: E402
from tests.support.fake_pigpiod import FakePigpiod  # noqa: E402

PIN = 17
FREQUENCIES = {17: 200, 13: 250, 16: 250, 12: 250, 18: 16}
REPO = Path(__file__).resolve().parents[1]
_CHILD = (
    "import sys\n"
    "from tests.support.fake_pigpiod import FakePigpiod\n"
    "daemon = FakePigpiod(input_levels={21: 1}).start()\n"
    "print(daemon.port, flush=True)\n"
    "sys.stdin.read()\n"
    "daemon.stop()\n"
)


@contextlib.contextmanager
def daemon_in_thread() -> Iterator[int]:
    with FakePigpiod(input_levels={21: 1}) as daemon:
        yield daemon.port


@contextlib.contextmanager
def daemon_in_process() -> Iterator[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        yield int(child.stdout.readline())
    finally:
        if child.stdin:
            child.stdin.close()  # EOF: the child stops its daemon and exits
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout:
            child.stdout.close()


def measure(n: int, op: Callable[[int], None], warmup: int = 100) -> list[float]:
    """Milliseconds per call of ``op(i)`` for ``n`` calls, after ``warmup`` untimed calls."""
    for i in range(warmup):
        op(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        op(i)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(label: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"   {label:<52} median {statistics.median(samples):.3f} ms  p90 {cuts[89]:.3f} ms  p99 {cuts[98]:.3f} ms"


def run(port: int, n: int) -> dict[str, list[float]]:
    pi = pigpio.pi("127.0.0.1", port, show_errors=False)
    if not pi.connected:
        raise SystemExit(f"could not connect to the fake pigpiod on port {port}")
    try:
        pi.set_PWM_frequency(PIN, 200)
        pi.set_PWM_range(PIN, 1000)

        def raw_set_then_get(i: int) -> None:
            pi.set_PWM_dutycycle(PIN, i % 1001)
            if pi.get_PWM_dutycycle(PIN) != i % 1001:
                raise AssertionError("read-back mismatch")

        raw = measure(n, raw_set_then_get)
    finally:
        pi.stop()

    with PigpioPwmBackend(port=port, frequencies=FREQUENCIES) as backend:

        def set_duty(i: int) -> None:
            backend.set_duty(PIN, (i % 1001) / 10.0)

        def set_then_read(i: int) -> None:
            backend.set_duty(PIN, (i % 1001) / 10.0)
            backend.duty(PIN)

        return {
            "raw client: set_PWM_dutycycle + get_PWM_dutycycle": raw,
            "PigpioPwmBackend.set_duty": measure(n, set_duty),
            "PigpioPwmBackend.set_duty + duty": measure(n, set_then_read),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="timed calls per measurement (default 2000)")
    n = parser.parse_args().n
    logging.basicConfig(level=logging.ERROR)  # the heater's expected 16 -> 20 Hz snap warning is noise here

    print(f"pigpio client {pigpio.VERSION}, Python {sys.version.split()[0]}, loopback TCP, N={n} per line")
    places = (("fake pigpiod in a thread", daemon_in_thread), ("fake pigpiod in its own process", daemon_in_process))
    for where, daemon in places:
        print(f"-- {where}")
        with daemon() as port:
            for label, samples in run(port, n).items():
                print(summary(label, samples), flush=True)


if __name__ == "__main__":
    main()
