"""How fast a unit's outbox drains into the leader's database after an outage, end to end.

Why: after a network cut a unit holds everything it produced meanwhile; how long it takes to catch up
(and whether it keeps up while still producing) is what a user waits for. A real node process (its
MQTTBridge actor and SQLite outbox) is cut from a real Mosquitto by a TCP proxy while a test job
publishes ``--records`` records; the network comes back and the clock runs until the leader's ingest
(a real ``python -m leader.ingestor`` process) holds every one and the unit's outbox is empty.

Prints: the backlog build rate (records appended per second by the bridge while offline), the drain
rate (records per second from reconnect to empty outbox), and a check that every record arrived once.

Run: ``.venv/bin/python bench/outbox_drain.py [--records 20000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.ingest import IngestProcess  # noqa: E402
from tests.support.node import Node  # noqa: E402
from tests.support.proxy import Proxy  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

PLUGIN = Path(__file__).resolve().parents[1] / "tests" / "plugins" / "record_source.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    broker = Mosquitto().start()
    proxy = Proxy(broker.host, broker.port)
    ingest = IngestProcess(root / "leader", broker)
    node = Node(root / "sim01", proxy, time_scale=100.0)
    shutil.copy(PLUGIN, node.plugin_dir / "record_source.py")
    status = lambda: node.pio_json("status")  # noqa: E731
    try:
        ingest.start()
        node.start()
        wait_until(lambda: status()["broker"]["connected"], timeout=30, message="node connected")
        wait_until(lambda: status()["outbox"]["pending"] == 0, timeout=30, message="startup records drained")
        base = status()["outbox"]["appended"]
        proxy.cut()
        wait_until(lambda: not status()["broker"]["connected"], timeout=30, message="node cut off")
        t0 = time.perf_counter()
        node.pio("run", "record_source", "--count", str(args.records), "--per_tick", "100")
        wait_until(lambda: status()["outbox"]["appended"] - base >= args.records, timeout=600, interval=0.2,
                   message="backlog built")
        built = time.perf_counter() - t0
        pending = status()["outbox"]["pending"]
        t1 = time.perf_counter()
        proxy.restore()
        wait_until(lambda: status()["outbox"]["pending"] == 0, timeout=600, interval=0.1, message="outbox drained")
        drained = time.perf_counter() - t1
        values = ingest.values(node.unit)
        exact = values == list(range(1, args.records + 1))
        print(f"backlog: {args.records} records appended offline in {built:.2f} s ({args.records / built:,.0f} records/s)")
        print(f"drain:   {pending} records from reconnect to empty outbox in {drained:.2f} s ({pending / drained:,.0f} records/s)")
        print(f"check:   every record stored exactly once: {exact} ({len(values)} rows)")
    finally:
        node.cleanup()
        ingest.stop()
        proxy.close()
        broker.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
