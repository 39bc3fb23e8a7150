"""I2C over loopback TCP: a server that runs transactions on a :class:`FakeI2CBus`, and a client bus.

Why: a simulated unit is a *device*. Its chips live in one process (the simulated vessel's), and the
drivers that talk to them live in others (the OD reader, the LED and temperature drivers). Each driver
opens a :class:`RemoteI2CBus`, which implements the same :class:`~actors.hardware.i2c.I2CBus` protocol as
the Pi's ``/dev/i2c-1``, so the chip drivers run unmodified, byte for byte, against the register models.

Semantics follow Linux i2c-dev:

* The server runs one transaction at a time (the kernel serialises transfers on an adapter), whichever
  client sent it. ``writeto_then_readfrom`` is ONE combined transaction (``I2C_RDWR`` with a repeated
  start), so no other client's transfer can move a chip's register pointer between the write and the read.
* Failures come back as ``OSError(errno, strerror)``: ``121 Remote I/O error`` when a chip does not
  acknowledge or no chip sits at the address. A lost or unreachable server is ``5 Input/output error``
  (``110 Connection timed out`` if it stops answering), with a note saying which server; the bus
  reconnects on the next call.
* ``try_lock``/``unlock`` are a per-client lock, as ``busio.I2C`` has: they keep two drivers of one
  process from interleaving a multi-step exchange. Across processes, transactions are atomic at the
  server, as they are in the kernel.

Wire format (all integers little-endian), one request then one response, in order, on one connection:

* request: ``op u8, address u8, write_len u16, read_len u16`` (6 bytes), then ``write_len`` bytes.

  ====  ===========  ==========================================================================
  op    name         meaning
  ====  ===========  ==========================================================================
  1     SCAN         addresses that acknowledge (lengths 0)
  2     WRITE        write ``write_len`` bytes to ``address`` (0 bytes = address-only probe)
  3     READ         read ``read_len`` bytes from ``address``
  4     WRITE_READ   write, repeated start, read: one combined transaction
  ====  ===========  ==========================================================================

* response: ``errno u16, length u16`` (4 bytes), then ``length`` bytes. ``errno`` 0 is success and the
  payload is the bytes read (``read_len`` of them), the scanned addresses (one byte each), or nothing
  after a write. A non-zero ``errno`` carries ``strerror`` as UTF-8 text.

Lengths above :data:`MAX_TRANSFER` (i2c-dev's 8192-byte message limit) are refused with ``EINVAL``.
The server listens on 127.0.0.1 only: the protocol has no authentication, like pigpiod's.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Any

from actors import logs
from actors.hardware.loopback_server import LOOPBACK, Connection, LoopbackServer, recv_exact
from actors.hardware.sim_i2c import EREMOTEIO, FakeI2CBus

log = logs.get("sim_i2c_server")

OP_SCAN, OP_WRITE, OP_READ, OP_WRITE_READ = 1, 2, 3, 4
MAX_TRANSFER = 8192
DEFAULT_TIMEOUT_S = 5.0
BUS_LOCK_TIMEOUT_S = 1.0

_REQUEST = struct.Struct("<BBHH")
_RESPONSE = struct.Struct("<HH")
_OPS = {OP_SCAN: "scan", OP_WRITE: "write", OP_READ: "read", OP_WRITE_READ: "write_read"}


def _error(code: int, detail: str = "") -> OSError:
    """``OSError(code, strerror)`` as i2c-dev raises it; ``detail`` goes in a note, not the message."""
    text = "Remote I/O error" if code == EREMOTEIO else os.strerror(code)
    err = OSError(code, text)
    if detail:
        err.add_note(detail)
    return err


# =============================================================================================
# Server
# =============================================================================================


class I2CServer:
    """Serves ``bus`` on ``127.0.0.1:port`` (0 = a free port, read :attr:`port` after :meth:`start`).

    ``bus`` is used only from inside this server's transaction lock, and each transaction holds the
    bus's own lock too (a :class:`FakeI2CBus` with ``strict_locking`` insists on it). The listening,
    accepting and hanging up are :class:`~actors.hardware.loopback_server.LoopbackServer`'s; this class
    only speaks the protocol on each connection.
    """

    def __init__(self, bus: FakeI2CBus, *, port: int = 0) -> None:
        self.bus = bus
        self._lock = threading.Lock()  # one transaction at a time, like the kernel's adapter lock
        self._server = LoopbackServer(self._serve, port=port, name="sim-i2c", owner="I2CServer")
        self.transactions = 0

    @property
    def port(self) -> int:
        """The TCP port the server listens on (valid after :meth:`start`)."""
        return self._server.port

    def start(self) -> I2CServer:
        """Bind 127.0.0.1, listen and start accepting clients. Returns ``self`` for chaining."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop accepting, hang up every client and join every thread. Idempotent."""
        self._server.stop()

    def connection_count(self) -> int:
        """Clients connected now."""
        return self._server.connection_count()

    def __enter__(self) -> I2CServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- protocol ------------------------------------------------------------------------------------
    def _serve(self, conn: Connection) -> None:
        """Answer one client's requests, in order, until it hangs up (runs on the connection's thread)."""
        while True:
            head = recv_exact(conn.sock, _REQUEST.size)
            if head is None:
                return
            op, address, write_len, read_len = _REQUEST.unpack(head)
            data = recv_exact(conn.sock, write_len) if write_len else b""
            if data is None:
                return
            code, payload = self._execute(op, address, data, read_len)
            if not conn.send(_RESPONSE.pack(code, len(payload)) + payload):
                return

    def _execute(self, op: int, address: int, data: bytes, read_len: int) -> tuple[int, bytes]:
        """Run one transaction; return ``(errno, payload)`` for the response."""
        if op not in _OPS:
            return errno.EINVAL, f"unknown operation {op}".encode()
        if len(data) > MAX_TRANSFER or read_len > MAX_TRANSFER or address > 0x7F:
            return errno.EINVAL, os.strerror(errno.EINVAL).encode()
        with self._lock:
            deadline = time.monotonic() + BUS_LOCK_TIMEOUT_S
            while not self.bus.try_lock():
                if time.monotonic() > deadline:
                    return errno.EBUSY, os.strerror(errno.EBUSY).encode()
                time.sleep(0.0001)
            try:
                self.transactions += 1
                if op == OP_SCAN:
                    return 0, bytes(self.bus.scan())
                if op == OP_WRITE:
                    self.bus.writeto(address, data)
                    return 0, b""
                buf = bytearray(read_len)
                if op == OP_READ:
                    self.bus.readfrom_into(address, buf)
                else:
                    self.bus.writeto_then_readfrom(address, data, buf)
                return 0, bytes(buf)
            except OSError as e:
                code = e.errno if e.errno else errno.EIO
                text = e.strerror if e.errno and e.strerror else ("Remote I/O error" if code == EREMOTEIO else os.strerror(code))
                return code, text.encode()
            except Exception:
                # A bug in a chip model or in what it is wired to: the bus reports an I/O error, the log says why.
                log.exception("simulated I2C %s at 0x%02X failed", _OPS[op], address)
                return errno.EIO, os.strerror(errno.EIO).encode()
            finally:
                self.bus.unlock()


# =============================================================================================
# Client
# =============================================================================================


class RemoteI2CBus:
    """An :class:`~actors.hardware.i2c.I2CBus` whose transactions run on an :class:`I2CServer`.

    One TCP connection (TCP_NODELAY; a round trip is tens of microseconds on loopback), opened on first
    use and re-opened after the server hangs up, so a restarted simulator is picked up without
    rebuilding the drivers. A transaction whose connection breaks midway is not retried: it may already
    have run (a write to an LED, say), so it fails with ``EIO`` like a bus glitch, and the caller decides.
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, got {port}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()  # busio-style advisory lock for callers
        self._io = threading.Lock()  # one request/response on the socket at a time
        self._sock: socket.socket | None = None
        self.connects = 0

    # -- busio.I2C -----------------------------------------------------------------------------------
    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def scan(self) -> list[int]:
        return list(self._transact(OP_SCAN, 0, b"", 0))

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._transact(OP_WRITE, address, bytes(memoryview(buffer)[start:end]), 0)

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        view = memoryview(buffer)
        stop = len(view) if end is None else end
        view[start:stop] = self._transact(OP_READ, address, b"", stop - start)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        data = bytes(memoryview(buffer_out)[out_start:out_end])
        view = memoryview(buffer_in)
        stop = len(view) if in_end is None else in_end
        view[in_start:stop] = self._transact(OP_WRITE_READ, address, data, stop - in_start)

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._io:
            self._drop()

    def deinit(self) -> None:
        self.close()
        self.unlock()

    def __enter__(self) -> RemoteI2CBus:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.deinit()

    def __repr__(self) -> str:
        return f"<RemoteI2CBus {self.host}:{self.port}>"

    # -- internals -----------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"simulated I2C device at {self.host}:{self.port}"

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _stale(self, sock: socket.socket) -> bool:
        """True when the server has hung up (or sent bytes nobody asked for) since the last exchange."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.setblocking(False)
            try:
                sock.recv(1, socket.MSG_PEEK)
            finally:
                sock.settimeout(self.timeout)
            return True  # EOF, or unsolicited data: either way the stream cannot be trusted
        except OSError:
            return True

    def _connection(self) -> socket.socket:
        if self._sock is not None and self._stale(self._sock):
            self._drop()
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as e:
                raise _error(errno.EIO, f"{self._where()} is not reachable ({e})") from e
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self.connects += 1
        return self._sock

    def _transact(self, op: int, address: int, data: bytes, read_len: int) -> bytes:
        if not 0 <= address <= 0x7F:
            raise ValueError(f"I2C addresses are 7-bit (0x00-0x7F), got {address!r}")
        if len(data) > MAX_TRANSFER or not 0 <= read_len <= MAX_TRANSFER:
            raise _error(errno.EINVAL, f"an I2C message is at most {MAX_TRANSFER} bytes")
        with self._io:
            sock = self._connection()
            try:
                sock.sendall(_REQUEST.pack(op, address, len(data), read_len) + data)
                head = _recv_exact_or_raise(sock, _RESPONSE.size)
                code, length = _RESPONSE.unpack(head)
                payload = _recv_exact_or_raise(sock, length) if length else b""
            except TimeoutError as e:
                self._drop()
                raise _error(errno.ETIMEDOUT, f"{self._where()} did not answer within {self.timeout:g} s") from e
            except OSError as e:
                self._drop()
                raise _error(errno.EIO, f"lost the connection to the {self._where()} ({e})") from e
        if code:
            raise OSError(code, payload.decode("utf-8", "replace") or os.strerror(code))
        if op in (OP_READ, OP_WRITE_READ) and len(payload) != read_len:
            raise _error(errno.EIO, f"{self._where()} returned {len(payload)} bytes, expected {read_len}")
        return payload


def _recv_exact_or_raise(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))  # TimeoutError / ConnectionResetError propagate
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    return bytes(buf)


__all__ = ["I2CServer", "MAX_TRANSFER", "RemoteI2CBus"]
