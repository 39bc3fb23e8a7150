"""A threaded TCP server on 127.0.0.1: the socket plumbing the simulated device's servers share.

Why: the simulated unit exposes its chips through two wire protocols, pigpio's
(:class:`~actors.hardware.sim_pigpiod.FakePigpiod`) and our I2C one
(:class:`~actors.hardware.sim_i2c_server.I2CServer`). What they say differs; how they listen, accept,
serve and hang up does not, and that part is where the subtle bugs live (a thread left behind by
``stop()``, a client that hangs in ``recv`` forever, a listener reachable from the network). So it is
written once, here, and each protocol supplies only a handler that speaks it on one connection.

Guarantees:

* Binds 127.0.0.1 only. Neither protocol has any authentication (pigpiod's has none either), so a
  simulated device must never be reachable from another machine.
* One thread per client, running the handler until it returns; then the socket is closed and the
  client is forgotten, so :meth:`LoopbackServer.connection_count` falls only once the handler's own
  clean-up is done.
* :meth:`LoopbackServer.stop` is idempotent and leaves no thread and no socket: it wakes the accept
  thread through a pipe (closing a socket another thread is blocked on in ``select`` does not reliably
  wake it), shuts every client socket down so its handler's ``recv`` returns, and joins them all.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Callable

LOOPBACK = "127.0.0.1"
JOIN_TIMEOUT_S = 5.0


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None if the peer closed or reset the connection first.

    Why None rather than an exception: for a server, a client going away mid-request is the normal
    end of a connection, not an error, and a handler just returns.
    """
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Connection:
    """One accepted client socket.

    Sends go through :meth:`send`, which holds a per-connection lock: a protocol may write to a client
    from more than one thread (pigpiod's notification frames share the socket with command responses),
    and two half-interleaved writes would corrupt the stream.
    """

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number  # 1, 2, ... in accept order, for thread names and logs
        self.send_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def send(self, data: bytes) -> bool:
        """Send all of ``data``; False if the client is gone or would not take it within the send timeout."""
        with self.send_lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def hang_up(self) -> None:
        """Shut the socket down both ways, which wakes the connection's thread out of ``recv``.

        Why not ``close()``: the serving thread still owns the socket and closes it once its handler
        has cleaned up; closing it from here could hand its descriptor number to another socket.
        """
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already shut down, or the peer reset it first


Handler = Callable[[Connection], None]


class LoopbackServer:
    """Serves ``handler`` on ``127.0.0.1:port`` (0 = a free port; read :attr:`port` after :meth:`start`).

    ``handler(conn)`` runs on the connection's own thread and returns when it is done with the client
    (peer closed, protocol error, or :meth:`stop`); the server then closes the socket. ``name`` prefixes
    the thread names (``<name>-accept:<port>``, ``<name>-conn-<n>``) so a test can tell which server left
    a thread behind; ``owner`` is the class the caller knows, named in errors. ``send_timeout_s`` sets ``SO_SNDTIMEO`` on every client socket: a client that stops
    reading then makes :meth:`Connection.send` fail instead of blocking the thread that sends.

    Can be started again after :meth:`stop` (a restarted simulator).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        port: int = 0,
        name: str = "loopback",
        owner: str = "LoopbackServer",
        send_timeout_s: float | None = None,
    ) -> None:
        if send_timeout_s is not None and not send_timeout_s > 0:
            raise ValueError(f"send_timeout_s must be > 0 seconds, got {send_timeout_s!r}")
        self._handler = handler
        self._requested_port = port
        self._name = name
        self._owner = owner
        self._send_timeout_s = send_timeout_s
        self._port = 0
        self._state = threading.Lock()  # guards the connection set and counter
        self._listener: socket.socket | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[Connection] = set()
        self._counter = 0

    @property
    def port(self) -> int:
        """The port listened on: 0 before :meth:`start`, and still the last one after :meth:`stop`."""
        return self._port

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._listener is not None

    def start(self) -> None:
        """Bind 127.0.0.1, listen, and start the accept thread."""
        if self._listener is not None:
            raise RuntimeError(f"{self._owner} already started")
        self._listener = socket.create_server((LOOPBACK, self._requested_port))
        self._port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self._name}-accept:{self._port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, hang up every client and join every thread. Idempotent."""
        if self._listener is None:
            return
        assert self._wake_w is not None and self._accept_thread is not None
        os.write(self._wake_w, b"x")
        # Joined before the listener closes and before the snapshot below: no client can then be
        # accepted after its peers were hung up.
        self._accept_thread.join(timeout=JOIN_TIMEOUT_S)
        self._listener.close()
        with self._state:
            conns = list(self._conns)
        for conn in conns:
            conn.hang_up()
        for conn in conns:
            if conn.thread is not None:
                conn.thread.join(timeout=JOIN_TIMEOUT_S)
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._listener = self._accept_thread = None
        self._wake_r = self._wake_w = None

    def connection_count(self) -> int:
        """Clients connected now (a client counts until its handler has returned)."""
        with self._state:
            return len(self._conns)

    # -- plumbing ------------------------------------------------------------------------------------
    def _configure(self, sock: socket.socket) -> None:
        """Socket options every client gets: no Nagle delay (the protocols are small request/response
        exchanges, where it would add tens of milliseconds), and the send timeout if one was asked for."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._send_timeout_s is not None:
            seconds = int(self._send_timeout_s)
            micros = int((self._send_timeout_s - seconds) * 1_000_000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        listen_fd = self._listener.fileno()
        while True:
            ready, _, _ = select.select([listen_fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                sock, _addr = self._listener.accept()
            except OSError:
                return
            self._configure(sock)
            with self._state:
                self._counter += 1
                conn = Connection(sock, self._counter)
                conn.thread = threading.Thread(
                    target=self._serve, args=(conn,), name=f"{self._name}-conn-{conn.number}", daemon=True
                )
                self._conns.add(conn)
            conn.thread.start()

    def _serve(self, conn: Connection) -> None:
        try:
            self._handler(conn)
        finally:
            with self._state:
                self._conns.discard(conn)
            conn.sock.close()


__all__ = ["LOOPBACK", "Connection", "Handler", "LoopbackServer", "recv_exact"]
