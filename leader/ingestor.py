"""The leader's ingest service: unit outboxes over MQTT into the database, exactly once.

One MQTT client with a persistent session (fixed client id, ``clean_start`` off, one hour of session
expiry) so the broker keeps the units' batches while the ingest is briefly away; it subscribes again on
every connect whatever the broker remembers. Batches are queued to one writer thread, which stores up
to a few hundred of them per transaction (:class:`leader.ingest.Ingest`) and then publishes each
touched unit's new watermark as its retained ``$node/ingest_ack``. Acks go out only after the commit:
a unit prunes nothing the database does not hold.

The leader daemon runs it; ``python -m leader.ingestor`` runs it alone (tests, or a second machine).
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from actors import records, topics
from actors.clock import utc_iso
from leader import database
from leader.ingest import Ingest

CLIENT_ID = "pioactors-ingest"
SESSION_EXPIRY_S = 3600
QUEUE_BATCHES = 2000  # the paho thread blocks past this: back-pressure, never loss
TRANSACTION_BATCHES = 200
TRANSACTION_WAIT_S = 0.05


class Ingestor:
    def __init__(
        self,
        db_path: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.db_path = db_path
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.log = log
        self.queue: queue.Queue[tuple[records.Batch, float] | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self.conn = database.connect(db_path)
        self.ingest = Ingest(self.conn)
        self.lock = threading.Lock()  # guards self.ingest between the writer and health readers
        self.client: Any = None
        self.writer: threading.Thread | None = None
        self.connected = threading.Event()
        self.batches = 0
        self.rejected = 0
        self.last_rejection: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, protocol=mqtt.MQTTv5)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.5, 5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client = client
        self.writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self.writer.start()
        client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
        self.queue.put(None)
        if self.writer is not None:
            self.writer.join(timeout=10)
        self.conn.close()

    # --- MQTT (paho's thread) -----------------------------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            self.log(f"ERROR ingest: the broker refused the login: {reason_code}")
            return
        client.subscribe(topics.outbox_topic("+"), qos=1)  # again on every connect (reference bug #66)
        with self.lock:
            marks = self.ingest.watermarks()
        for unit, streams in marks.items():  # units that missed an ack while we were away prune now
            client.publish(topics.ingest_ack_topic(unit), records.encode_ack(streams), qos=1, retain=True)
        self.connected.set()
        self.log("INFO ingest connected; subscribed to every unit's outbox")

    def _on_disconnect(self, *_args: Any) -> None:
        self.connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        received = time.time()
        unit = msg.topic.split("/")[1] if msg.topic.count("/") >= 3 else ""
        try:
            batch = records.decode_batch(msg.payload)
            if batch.unit != unit:
                raise records.ProtocolError(f"batch says unit {batch.unit!r} on {unit!r}'s topic")
            # The broker's ACL lets a unit write only under its own name; the records must say the same.
            foreign = next((r.topic for r in batch.records if records.split_topic(r.topic)[0] != unit), None)
            if foreign is not None:
                raise records.ProtocolError(f"record topic {foreign!r} is not unit {unit!r}'s")
        except records.ProtocolError as e:
            self.rejected += 1
            self.last_rejection = f"{unit}: {e}"
            if self.rejected == 1 or self.rejected % 100 == 0:
                self.log(f"ERROR ingest rejected a batch from {unit} ({self.rejected} so far): {e}")
            return
        self.queue.put((batch, received))

    # --- the one writer --------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            pending = [item]
            deadline = time.monotonic() + TRANSACTION_WAIT_S
            while len(pending) < TRANSACTION_BATCHES:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                pending.append(item)
            try:
                with self.lock:
                    acks = self.ingest.apply(pending)
            except Exception as e:  # the database is unwritable: no ack, so the units keep everything
                self.log(f"ERROR ingest could not store {len(pending)} batch(es): {e}; the units will resend")
                continue
            self.batches += len(pending)
            for unit, streams in acks.items():
                if self.client is not None:
                    self.client.publish(topics.ingest_ack_topic(unit), records.encode_ack(streams), qos=1, retain=True)

    # --- figures -----------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        with self.lock:
            figures = self.ingest.health()
        return {
            **figures,
            "connected": self.connected.is_set(),
            "queued_batches": self.queue.qsize(),
            "batches": self.batches,
            "rejected_batches": self.rejected,
            "last_rejection": self.last_rejection,
            "updated_at": utc_iso(time.time()),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m leader.ingestor", description="ingest unit outboxes into a database")
    parser.add_argument("--db", required=True, help="SQLite file (created and migrated if needed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--health", help="write health JSON to this file every second")
    args = parser.parse_args(argv)
    try:
        ingestor = Ingestor(args.db, args.host, args.port, args.username, args.password,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    except database.DatabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    ingestor.start()
    from actors.files import atomic_write

    try:
        while not stopping.wait(1.0):
            if args.health:
                atomic_write(args.health, json.dumps(ingestor.health(), indent=2))
    finally:
        ingestor.stop()


if __name__ == "__main__":
    main()
