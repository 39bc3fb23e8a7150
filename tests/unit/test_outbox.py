"""The worker's durable outbox on a real SQLite file: append, batches, acknowledgements, bound, reopen."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.outbox import Outbox

AT = "2026-11-28T10:00:00.000Z"


def topic(job: str) -> str:
    return f"pioreactor/u1/exp1/{job}/value"


def fill(box: Outbox, n: int, stream: str = "od_reading") -> list[int]:
    return [box.append(stream, topic(stream), str(i), AT).seq for i in range(n)]


def test_seq_rises_by_one_per_stream_and_survives_reopen(tmp_path):
    path = os.path.join(tmp_path, "outbox.sqlite")
    box = Outbox(path)
    od = fill(box, 3, "od_reading")
    gr = fill(box, 2, "growth_rate_calculating")
    assert od == list(range(od[0], od[0] + 3)) and gr == list(range(gr[0], gr[0] + 2))
    box.close()
    again = Outbox(path)
    assert again.pending() == 5
    assert fill(again, 1, "od_reading") == [od[-1] + 1]


def test_batches_respect_the_window_and_acks_prune(tmp_path):
    box = Outbox(os.path.join(tmp_path, "o.sqlite"))
    seqs = fill(box, 25)
    first = box.next_batch(limit=10, window=15)
    second = box.next_batch(limit=10, window=15)
    assert [r.seq for r in first] == seqs[:10] and [r.seq for r in second] == seqs[10:15]
    assert box.next_batch(limit=10, window=15) == []  # window full until acknowledged
    assert box.acknowledge({"od_reading": seqs[9]}) == 10
    assert box.pending() == 15 and box.in_flight == 5
    assert [r.seq for r in box.next_batch(limit=10, window=15)] == seqs[15:25]


def test_rewind_resends_everything_unacknowledged(tmp_path):
    box = Outbox(os.path.join(tmp_path, "o.sqlite"))
    seqs = fill(box, 6)
    box.next_batch(limit=6)
    box.acknowledge({"od_reading": seqs[1]})
    box.rewind()
    assert [r.seq for r in box.next_batch(limit=10)] == seqs[2:]


def test_bound_drops_oldest_first_and_counts_per_stream(tmp_path):
    box = Outbox(os.path.join(tmp_path, "o.sqlite"), max_records=5)
    od = fill(box, 4, "od_reading")
    logs = fill(box, 3, "logs")
    assert box.pending() == 5
    assert box.dropped() == {"od_reading": 2}
    assert box.bases() == {"od_reading": od[2], "logs": logs[0]}
    assert [r.seq for r in box.next_batch(limit=10)] == od[2:] + logs


def test_a_new_outbox_never_reuses_a_seq_the_leader_holds(tmp_path):
    old = Outbox(os.path.join(tmp_path, "old.sqlite"))
    held = fill(old, 50)
    fresh = Outbox(os.path.join(tmp_path, "new.sqlite"))  # the SD card was replaced
    assert fill(fresh, 1)[0] > held[-1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "send", "ack", "rewind"]), st.integers(1, 7)), max_size=60))
def test_whatever_happens_every_record_is_sent_until_acknowledged(tmp_path_factory, steps):
    """Model check: after any mix of appends, sends, partial acks and rewinds, rewinding and draining
    yields exactly the records not yet acknowledged, in order."""
    box = Outbox(os.path.join(tmp_path_factory.mktemp("o"), "o.sqlite"))
    appended: list[int] = []
    acked = -1
    sent: list[int] = []
    for op, n in steps:
        if op == "append":
            appended += fill(box, n)
        elif op == "send":
            sent += [r.seq for r in box.next_batch(limit=n, window=10)]
        elif op == "ack" and sent:
            acked = max(acked, sent[min(n, len(sent)) - 1])
            box.acknowledge({"od_reading": acked})
        elif op == "rewind":
            box.rewind()
            sent = []
    box.rewind()
    drained = []
    while batch := box.next_batch(limit=7, window=10_000):
        drained += [r.seq for r in batch]
    assert drained == [s for s in appended if s > acked]
    assert box.pending() == len(drained)
