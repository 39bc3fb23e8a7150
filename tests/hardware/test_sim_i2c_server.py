"""I2C over loopback: :class:`I2CServer` runs transactions on a FakeI2CBus, :class:`RemoteI2CBus` is the
client bus. Checked with our real chip drivers (and the real Adafruit ADS1x15 driver) on top, because
that is how the simulated unit is used: the drivers must not be able to tell it from ``/dev/i2c-1``.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from actors.hardware.chips import ChipError
from actors.hardware.chips.ads1x15 import ADS1115Adc
from actors.hardware.chips.pico import PicoAdc, PicoDac
from actors.hardware.chips.tmp1075 import TMP1075
from actors.hardware.i2c import I2CBus
from actors.hardware.sim_i2c import ADS1115Model, FakeI2CBus, PicoModel, TMP1075Model
from actors.hardware.sim_i2c_server import MAX_TRANSFER, I2CServer, RemoteI2CBus
from tests.support.waiting import wait_until

AIN = {0: 0.1234, 1: 2.5, 2: 0.0, 3: 3.3}


def _bus() -> FakeI2CBus:
    return FakeI2CBus(
        {
            0x48: ADS1115Model(lambda ch: AIN[ch]),
            0x2C: PicoModel(lambda ch: 0.5 + 0.1 * ch),
            0x4F: TMP1075Model(lambda: 37.25),
        }
    )


@pytest.fixture
def fake() -> FakeI2CBus:
    return _bus()


@pytest.fixture
def server(fake: FakeI2CBus) -> Iterator[I2CServer]:
    with I2CServer(fake) as srv:
        yield srv


@pytest.fixture
def remote(server: I2CServer) -> Iterator[RemoteI2CBus]:
    with RemoteI2CBus("127.0.0.1", server.port) as bus:
        yield bus


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, read from the kernel's tables (Linux)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = TCP_LISTEN
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


# -- the bus protocol, through real drivers -----------------------------------------------------------
def test_remote_bus_is_an_i2c_bus_and_scans(remote: RemoteI2CBus) -> None:
    assert isinstance(remote, I2CBus)
    assert remote.try_lock()
    try:
        assert remote.scan() == [0x2C, 0x48, 0x4F]
    finally:
        remote.unlock()


def test_chip_drivers_read_through_the_server(remote: RemoteI2CBus) -> None:
    assert TMP1075(remote).read_celsius() == 37.25
    pico = PicoAdc(remote)
    assert pico.firmware_version() == (0, 5)
    assert pico.read_volts(2) == pytest.approx(0.7, abs=0.001)
    ads = ADS1115Adc(remote, 0x48)  # the maintained Adafruit driver underneath, with its address probe
    assert ads.read_volts(0) == pytest.approx(0.1234, abs=0.0002)
    assert ads.read_volts(1) == pytest.approx(2.5, abs=0.0002)


def test_writes_reach_the_chip_model(fake: FakeI2CBus, remote: RemoteI2CBus) -> None:
    PicoDac(remote).set_intensity("B", 50)
    model = fake.devices[0x2C]
    assert isinstance(model, PicoModel) and model.intensities[1] == 128


def test_write_then_read_is_one_combined_transaction(fake: FakeI2CBus, remote: RemoteI2CBus) -> None:
    fake.log.clear()
    reply = bytearray(2)
    remote.writeto_then_readfrom(0x4F, bytes([0x00]), reply)
    assert len(fake.log) == 1
    assert fake.log[0].wrote == b"\x00" and fake.log[0].read == bytes(reply)


def test_buffer_slices_are_honoured(fake: FakeI2CBus, remote: RemoteI2CBus) -> None:
    out = bytearray(b"\xaa\x00\xbb")
    into = bytearray(b"\x11\x22\x33\x44")
    remote.writeto_then_readfrom(0x4F, out, into, out_start=1, out_end=2, in_start=1, in_end=3)
    assert fake.log[-1].wrote == b"\x00"
    assert into[0] == 0x11 and into[3] == 0x44 and into[1:3] == bytes([0x25, 0x40])  # 37.25 °C
    remote.writeto(0x4F, b"\x99\x00\x99", start=1, end=2)
    assert fake.log[-1].wrote == b"\x00"
    remote.readfrom_into(0x4F, into, start=2)
    assert into[2:] == bytes([0x25, 0x40])


def test_local_lock_is_advisory_and_per_client(server: I2CServer) -> None:
    a, b = RemoteI2CBus(port=server.port), RemoteI2CBus(port=server.port)
    try:
        assert a.try_lock() and not a.try_lock()
        assert b.try_lock()  # another client (another process, say): serialised at the server instead
        a.unlock()
        assert a.try_lock()
    finally:
        a.deinit()
        b.deinit()


# -- errors exactly like Linux i2c-dev ----------------------------------------------------------------
def test_missing_device_is_remote_io_error_121(remote: RemoteI2CBus) -> None:
    with pytest.raises(OSError) as info:
        remote.writeto(0x10, b"\x00")
    assert type(info.value) is OSError
    assert info.value.errno == errno.EREMOTEIO == 121
    assert info.value.strerror == "Remote I/O error"
    assert str(info.value) == "[Errno 121] Remote I/O error"


def test_nack_from_the_model_and_fault_injection_travel_as_errno(fake: FakeI2CBus, remote: RemoteI2CBus) -> None:
    fake.nack_next(0x4F, 2, code=errno.ETIMEDOUT)
    with pytest.raises(ChipError) as info:
        TMP1075(remote).read_celsius()
    assert info.value.errno == errno.ETIMEDOUT and "timed out" in info.value.reason
    fake.fail_always(0x4F)
    with pytest.raises(ChipError) as info:
        TMP1075(remote).read_celsius()
    assert info.value.errno == 121 and info.value.address == 0x4F
    fake.clear_faults()
    assert TMP1075(remote).read_celsius() == 37.25


def test_a_model_that_breaks_is_an_io_error_not_a_dead_server(fake: FakeI2CBus, remote: RemoteI2CBus) -> None:
    def broken() -> float:
        raise ZeroDivisionError("bug in the model")

    fake.attach(0x4E, TMP1075Model(broken))
    with pytest.raises(OSError) as info:
        remote.writeto_then_readfrom(0x4E, b"\x00", bytearray(2))
    assert info.value.errno == errno.EIO
    assert TMP1075(remote).read_celsius() == 37.25  # the connection and server carry on


def test_argument_checks(remote: RemoteI2CBus) -> None:
    with pytest.raises(ValueError):
        remote.writeto(0x80, b"")
    with pytest.raises(OSError) as info:
        remote.writeto(0x4F, bytes(MAX_TRANSFER + 1))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        RemoteI2CBus(port=0)


def test_wire_format_on_a_raw_socket(server: I2CServer) -> None:
    def call(op: int, address: int, data: bytes, read_len: int) -> tuple[int, bytes]:
        sock.sendall(struct.pack("<BBHH", op, address, len(data), read_len) + data)
        code, length = struct.unpack("<HH", sock.recv(4, socket.MSG_WAITALL))
        return code, sock.recv(length, socket.MSG_WAITALL) if length else b""

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert call(1, 0, b"", 0) == (0, bytes([0x2C, 0x48, 0x4F]))  # SCAN
        assert call(4, 0x4F, b"\x00", 2) == (0, bytes([0x25, 0x40]))  # WRITE_READ
        assert call(2, 0x4F, b"\x00", 0) == (0, b"")  # WRITE
        assert call(3, 0x4F, b"", 2) == (0, bytes([0x25, 0x40]))  # READ
        assert call(2, 0x11, b"", 0) == (121, b"Remote I/O error")
        assert call(9, 0x4F, b"\x01\x02", 0) == (errno.EINVAL, b"unknown operation 9")
        head = struct.pack("<BBHH", 4, 0x4F, 1, 2) + b"\x00"  # framing is by bytes, not by segments
        sock.sendall(head[:3])
        sock.sendall(head[3:])
        assert sock.recv(6, socket.MSG_WAITALL) == struct.pack("<HH", 0, 2) + bytes([0x25, 0x40])


# -- one transaction at a time ------------------------------------------------------------------------
def test_concurrent_clients_never_interleave_a_register_exchange(fake: FakeI2CBus, server: I2CServer) -> None:
    """Two clients move the TMP1075's pointer to different registers and read back; if a transaction
    could interleave with another, one would read the other's register."""
    fake.devices[0x4F].registers[1] = 0x1234  # type: ignore[attr-defined]
    failures: list[str] = []

    def hammer(pointer: int, expected: bytes) -> None:
        bus = RemoteI2CBus(port=server.port)
        try:
            for _ in range(300):
                reply = bytearray(2)
                bus.writeto_then_readfrom(0x4F, bytes([pointer]), reply)
                if bytes(reply) != expected:
                    failures.append(f"pointer {pointer} read {reply.hex()}")
        finally:
            bus.close()

    threads = [
        threading.Thread(target=hammer, args=(0, bytes([0x25, 0x40]))),
        threading.Thread(target=hammer, args=(1, bytes([0x12, 0x34]))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures
    assert server.transactions >= 600


# -- connections: reconnect, lost server, timeouts ----------------------------------------------------
def test_reconnects_transparently_after_the_server_restarts(fake: FakeI2CBus) -> None:
    first = I2CServer(fake).start()
    port = first.port
    bus = RemoteI2CBus(port=port)
    try:
        assert TMP1075(bus).read_celsius() == 37.25
        first.stop()
        with pytest.raises(ChipError) as info:  # nobody listening: an I/O error on the bus
            TMP1075(bus).read_celsius()
        assert info.value.errno == errno.EIO
        with I2CServer(fake, port=port):
            assert TMP1075(bus).read_celsius() == 37.25
        assert bus.connects == 2
        with I2CServer(fake, port=port):  # restarted while the client was idle: the stale socket is noticed
            assert TMP1075(bus).read_celsius() == 37.25
        assert bus.connects == 3
    finally:
        bus.close()
        first.stop()


def test_a_connection_dropped_mid_transaction_is_eio_and_not_retried() -> None:
    """The server may already have run the transaction, so the client must not resend it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        requests: list[bytes] = []

        def serve_once() -> None:
            conn, _ = listener.accept()
            requests.append(conn.recv(64))
            conn.close()  # hang up without answering

        t = threading.Thread(target=serve_once)
        t.start()
        bus = RemoteI2CBus(port=port)
        with pytest.raises(OSError) as info:
            bus.writeto(0x2C, b"\x00\x10")
        t.join(timeout=5)
        assert info.value.errno == errno.EIO and info.value.strerror == "Input/output error"
        assert len(requests) == 1
        bus.close()


def test_a_server_that_stops_answering_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        bus = RemoteI2CBus(port=port, timeout=0.2)
        with pytest.raises(OSError) as info:
            bus.writeto_then_readfrom(0x4F, b"\x00", bytearray(2))  # accepted by the backlog, never answered
        assert info.value.errno == errno.ETIMEDOUT
        bus.close()


# -- lifecycle and exposure ---------------------------------------------------------------------------
def test_server_binds_loopback_only(server: I2CServer) -> None:
    assert listening_addresses(server.port) == {"127.0.0.1"}


def test_stop_hangs_up_clients_and_leaves_no_threads(fake: FakeI2CBus) -> None:
    srv = I2CServer(fake).start()
    bus = RemoteI2CBus(port=srv.port)
    assert TMP1075(bus).read_celsius() == 37.25
    wait_until(lambda: srv.connection_count() == 1, timeout=5)
    srv.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("sim-i2c")]
    assert listening_addresses(srv.port) == set()
    srv.stop()  # idempotent
    with pytest.raises(ChipError) as info:  # the server is gone: an I/O error on the bus, not a hang
        TMP1075(bus).read_celsius()
    assert info.value.errno == errno.EIO
    bus.close()
