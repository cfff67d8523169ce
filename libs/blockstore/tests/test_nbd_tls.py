"""NBD STARTTLS with meshnet credentials: the core's rules and a real TLS 1.3 session."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

import blockstore
import meshnet
from blockstore import NEED_DATA, ExportInfo, NbdDisconnect, NbdExportChosen, NbdServerConnection, NbdStartTls
from blockstore import _nbd_proto as p

EXPORT = ExportInfo(name="disk", size=1 << 20)


def option(opt: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", p.OPTS_MAGIC, opt, len(data)) + data


def go(name: bytes = b"disk") -> bytes:
    return option(p.OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))


def reply_types(raw: bytes) -> list[int]:
    out = []
    while raw:
        _magic, _opt, typ, length = struct.unpack_from(">QIII", raw)
        out.append(typ)
        raw = raw[20 + length :]
    return out


def test_tls_required_refuses_options_until_starttls() -> None:
    conn = NbdServerConnection({"disk": EXPORT}, tls="required")
    conn.data_to_send()
    conn.receive_data(struct.pack(">I", 1) + go() + option(p.OPT_LIST))
    assert conn.next_event() is NEED_DATA
    assert reply_types(conn.data_to_send()) == [p.REP_ERR_TLS_REQD, p.REP_ERR_TLS_REQD]
    conn.receive_data(option(p.OPT_STARTTLS))
    assert isinstance(conn.next_event(), NbdStartTls)
    assert reply_types(conn.data_to_send()) == [p.REP_ACK]
    conn.receive_data(option(p.OPT_STARTTLS))  # a second STARTTLS inside TLS is invalid
    assert conn.next_event() is NEED_DATA
    assert reply_types(conn.data_to_send()) == [p.REP_ERR_INVALID]
    conn.receive_data(go())
    assert isinstance(conn.next_event(), NbdExportChosen)


def test_export_name_without_required_tls_hangs_up() -> None:
    conn = NbdServerConnection({"disk": EXPORT}, tls="required")
    conn.receive_data(struct.pack(">I", 1) + option(p.OPT_EXPORT_NAME, b"disk"))
    event = conn.next_event()
    assert isinstance(event, NbdDisconnect)
    assert not event.clean


def test_bytes_pipelined_after_starttls_are_a_protocol_violation() -> None:
    conn = NbdServerConnection({"disk": EXPORT}, tls="optional")
    conn.receive_data(struct.pack(">I", 1) + option(p.OPT_STARTTLS) + go())
    event = conn.next_event()
    assert isinstance(event, NbdDisconnect)
    assert not event.clean


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, meshnet.NetworkIdentity]]:
    net = meshnet.NetworkIdentity.generate("nbd-tls")
    server_creds = net.credentials_for(meshnet.NodeIdentity.generate())
    spec = blockstore.VolumeSpec(name="disk", size=4 << 20, chunk_size=1 << 20, replicas=1)

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        replica = blockstore.LocalReplica("l0", tmp_path / "l0", spec.size, spec.block_size, spec.chunk_size)
        async with (
            blockstore.Volume(spec, {"l0": replica}) as vol,
            blockstore.serve_nbd({"disk": vol}, tls=server_creds.ssl_context(server_side=True)) as srv,
        ):
            yield srv.port

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving()) as port,
    ):
        yield port, net


def _negotiate_tls(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    greeting = raw.recv(18)
    assert struct.unpack(">QQH", greeting)[0] == p.INIT_MAGIC
    raw.sendall(struct.pack(">I", p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES) + option(p.OPT_STARTTLS))
    assert reply_types(raw.recv(20)) == [p.REP_ACK]
    return context.wrap_socket(raw)


def _recv_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


def test_starttls_session_with_a_network_certificate_reads_and_writes(
    tls_server: tuple[int, meshnet.NetworkIdentity],
) -> None:
    port, net = tls_server
    client = net.credentials_for(meshnet.NodeIdentity.generate())
    with _negotiate_tls(port, client.ssl_context(server_side=False)) as tls:
        assert tls.version() == "TLSv1.3"
        tls.sendall(go())
        header = _recv_exactly(tls, 20)
        types = []
        while True:
            _m, _o, typ, length = struct.unpack(">QIII", header)
            _recv_exactly(tls, length)
            types.append(typ)
            if typ == p.REP_ACK:
                break
            header = _recv_exactly(tls, 20)
        assert types[-1] == p.REP_ACK
        payload = b"\x42" * 4096
        tls.sendall(struct.pack(">IHHQQI", p.REQUEST_MAGIC, 0, p.CMD_WRITE, 1, 8192, 4096) + payload)
        assert struct.unpack(">IIQ", _recv_exactly(tls, 16)) == (p.SIMPLE_REPLY_MAGIC, 0, 1)
        tls.sendall(struct.pack(">IHHQQI", p.REQUEST_MAGIC, 0, p.CMD_READ, 2, 8192, 4096))
        assert struct.unpack(">IIQ", _recv_exactly(tls, 16)) == (p.SIMPLE_REPLY_MAGIC, 0, 2)
        assert _recv_exactly(tls, 4096) == payload


def test_starttls_refuses_a_client_of_another_network(
    tls_server: tuple[int, meshnet.NetworkIdentity],
) -> None:
    port, _net = tls_server
    stranger = meshnet.NetworkIdentity.generate("other").credentials_for(meshnet.NodeIdentity.generate())

    def attempt() -> None:
        tls = _negotiate_tls(port, stranger.ssl_context(server_side=False))
        tls.sendall(go())
        _recv_exactly(tls, 20)

    with pytest.raises((ssl.SSLError, ConnectionError, OSError, AssertionError)):
        attempt()


def test_plaintext_client_is_refused_when_tls_is_required(
    tls_server: tuple[int, meshnet.NetworkIdentity], need_binary: Callable[[str], str]
) -> None:
    need_binary("nbdinfo")
    port, _net = tls_server
    proc = subprocess.run(
        ["nbdinfo", f"nbd://127.0.0.1:{port}/disk"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode != 0
    assert "without TLS" in proc.stdout or "TLS" in proc.stderr or "not supported" in proc.stderr
