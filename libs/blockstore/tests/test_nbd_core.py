"""The sans-I/O NBD core: handshake, option haggling, request validation, fuzzed parser."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from blockstore import (
    NEED_DATA,
    ExportInfo,
    NbdDisconnect,
    NbdExportChosen,
    NbdRequest,
    NbdServerConnection,
)
from blockstore import _nbd_proto as p

EXPORT = ExportInfo(name="disk", size=1 << 20)


def option(opt: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", p.OPTS_MAGIC, opt, len(data)) + data


def request(cmd: int, offset: int = 0, length: int = 4096, handle: int = 7, flags: int = 0) -> bytes:
    return struct.pack(">IHHQQI", p.REQUEST_MAGIC, flags, cmd, handle, offset, length)


def go(name: bytes = b"disk", infos: tuple[int, ...] = ()) -> bytes:
    body = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
    body += b"".join(struct.pack(">H", i) for i in infos)
    return option(p.OPT_GO, body)


def replies(raw: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    while raw:
        magic, opt, typ, length = struct.unpack_from(">QIII", raw)
        assert magic == p.REP_MAGIC
        out.append((opt, typ, raw[20 : 20 + length]))
        raw = raw[20 + length :]
    return out


def drain(conn: NbdServerConnection) -> list[object]:
    events: list[object] = []
    for _ in range(1000):
        ev = conn.next_event()
        if ev is NEED_DATA:
            return events
        events.append(ev)
        if isinstance(ev, NbdDisconnect):
            return events
    raise AssertionError("core produced events without bound")


def negotiated(structured: bool = True) -> NbdServerConnection:
    conn = NbdServerConnection({"disk": EXPORT})
    conn.data_to_send()
    data = struct.pack(">I", p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES)
    if structured:
        data += option(p.OPT_STRUCTURED_REPLY)
    conn.receive_data(data + go())
    assert isinstance(drain(conn)[-1], NbdExportChosen)
    conn.data_to_send()
    return conn


def test_greeting_is_fixed_newstyle_with_no_zeroes() -> None:
    conn = NbdServerConnection({"disk": EXPORT})
    assert conn.data_to_send() == struct.pack(
        ">QQH", p.INIT_MAGIC, p.OPTS_MAGIC, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES
    )


def test_go_replies_export_info_block_size_then_ack() -> None:
    conn = NbdServerConnection({"disk": EXPORT})
    conn.data_to_send()
    conn.receive_data(struct.pack(">I", 1) + go(infos=(p.INFO_BLOCK_SIZE,)))
    assert isinstance(drain(conn)[0], NbdExportChosen)
    reps = replies(conn.data_to_send())
    assert reps[0][1] == p.REP_INFO
    info_type, size, flags = struct.unpack(">HQH", reps[0][2])
    assert (info_type, size) == (p.INFO_EXPORT, 1 << 20)
    assert flags & p.TFLAG_SEND_FLUSH
    assert flags & p.TFLAG_SEND_FUA
    assert not flags & p.TFLAG_CAN_MULTI_CONN
    assert struct.unpack(">HIII", reps[1][2]) == (p.INFO_BLOCK_SIZE, 512, 4096, 32 << 20)
    assert reps[-1][1] == p.REP_ACK


def test_info_on_unknown_export_is_an_error_and_negotiation_continues() -> None:
    conn = NbdServerConnection({"disk": EXPORT, "other": ExportInfo(name="other", size=4096)})
    conn.data_to_send()
    conn.receive_data(struct.pack(">I", 1) + go(name=b"nope"))
    assert drain(conn) == []
    assert replies(conn.data_to_send()) == [(p.OPT_GO, p.REP_ERR_UNKNOWN, b"")]
    conn.receive_data(go(name=b"other"))
    (chosen,) = drain(conn)
    assert isinstance(chosen, NbdExportChosen)
    assert chosen.export.name == "other"


def test_list_abort_and_unsupported_options() -> None:
    conn = NbdServerConnection({"disk": EXPORT})
    conn.data_to_send()
    conn.receive_data(struct.pack(">I", 1) + option(p.OPT_LIST) + option(99) + option(p.OPT_STARTTLS))
    assert drain(conn) == []
    reps = replies(conn.data_to_send())
    assert reps[0] == (p.OPT_LIST, p.REP_SERVER, struct.pack(">I", 4) + b"disk")
    assert reps[1] == (p.OPT_LIST, p.REP_ACK, b"")
    assert reps[2] == (99, p.REP_ERR_UNSUP, b"")
    assert reps[3] == (p.OPT_STARTTLS, p.REP_ERR_UNSUP, b"")
    conn.receive_data(option(p.OPT_ABORT))
    (ev,) = drain(conn)
    assert isinstance(ev, NbdDisconnect)
    assert ev.clean


def test_export_name_option_replies_size_flags_and_zero_padding() -> None:
    conn = NbdServerConnection({"disk": EXPORT})
    conn.data_to_send()
    conn.receive_data(struct.pack(">I", 1) + option(p.OPT_EXPORT_NAME, b""))
    assert isinstance(drain(conn)[0], NbdExportChosen)
    out = conn.data_to_send()
    assert len(out) == 8 + 2 + 124
    assert struct.unpack_from(">Q", out)[0] == 1 << 20


def test_valid_requests_become_events_with_their_payload() -> None:
    conn = negotiated()
    conn.receive_data(request(p.CMD_WRITE, 4096, 8, flags=p.CMD_FLAG_FUA) + b"abcdefgh")
    (ev,) = drain(conn)
    assert ev == NbdRequest(7, p.CMD_WRITE, p.CMD_FLAG_FUA, 4096, 8, b"abcdefgh")
    assert isinstance(ev, NbdRequest)
    assert ev.fua


def test_out_of_range_read_and_unknown_command_get_errors_not_events() -> None:
    conn = negotiated()
    conn.receive_data(
        request(p.CMD_READ, (1 << 20) - 10, 4096, handle=1)
        + request(42, handle=2)
        + request(p.CMD_READ, 0, 4096, handle=3, flags=1 << 9)
    )
    assert drain(conn) == []
    out = conn.data_to_send()
    errors = []
    while out:
        magic, flags, typ, handle, length = struct.unpack_from(">IHHQI", out)
        assert magic == p.STRUCTURED_REPLY_MAGIC
        assert typ == p.REPLY_TYPE_ERROR
        assert flags & p.REPLY_FLAG_DONE
        errors.append((handle, struct.unpack_from(">I", out, 20)[0]))
        out = out[20 + length :]
    assert errors == [(1, p.EINVAL), (2, p.EINVAL), (3, p.EINVAL)]


def test_write_to_read_only_export_is_eperm() -> None:
    conn = NbdServerConnection({"ro": ExportInfo(name="ro", size=8192, read_only=True)})
    conn.receive_data(struct.pack(">I", 1) + go(b"ro") + request(p.CMD_WRITE, 0, 4) + b"data")
    drain(conn)
    out = conn.data_to_send()
    assert out.endswith(struct.pack(">IIQ", p.SIMPLE_REPLY_MAGIC, p.EPERM, 7))


def test_bad_request_magic_is_a_hard_disconnect() -> None:
    conn = negotiated()
    conn.receive_data(b"\x00" * 28)
    (ev,) = drain(conn)
    assert isinstance(ev, NbdDisconnect)
    assert not ev.clean


def test_oversized_write_is_refused_before_buffering() -> None:
    conn = negotiated()
    conn.receive_data(request(p.CMD_WRITE, 0, (32 << 20) + 1))
    (ev,) = drain(conn)
    assert isinstance(ev, NbdDisconnect)
    assert not ev.clean


def test_read_reply_header_is_what_precedes_the_data() -> None:
    for conn in (negotiated(structured=False), negotiated()):
        for data in (b"", b"xy", bytes(4096)):
            assert conn.read_reply_header(7, 8192, len(data)) + data == conn.read_reply(7, 8192, data)


def test_read_reply_formats_simple_and_structured() -> None:
    simple = negotiated(structured=False)
    assert simple.read_reply(5, 0, b"xy") == struct.pack(">IIQ", p.SIMPLE_REPLY_MAGIC, 0, 5) + b"xy"
    structured = negotiated()
    out = structured.read_reply(5, 4096, b"xy")
    assert struct.unpack_from(">IHHQIQ", out) == (
        p.STRUCTURED_REPLY_MAGIC,
        p.REPLY_FLAG_DONE,
        p.REPLY_TYPE_OFFSET_DATA,
        5,
        10,
        4096,
    )
    assert out[-2:] == b"xy"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=64))
def test_any_bytes_in_any_split_never_crash_the_core(data: bytes, split: int) -> None:
    conn = NbdServerConnection({"disk": EXPORT})
    for i in range(0, len(data), split):
        conn.receive_data(data[i : i + split])
        for ev in drain(conn):
            assert isinstance(ev, NbdRequest | NbdExportChosen | NbdDisconnect)
        conn.data_to_send()
    conn.receive_data(b"")
    drain(conn)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF), st.integers(0, 10), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)
        ),
        max_size=8,
    )
)
def test_fuzzed_requests_after_handshake_yield_only_in_range_requests(
    reqs: list[tuple[int, int, int, int]],
) -> None:
    conn = negotiated()
    for flags, cmd, offset, length in reqs:
        raw = request(cmd, offset, length, flags=flags)
        if cmd == p.CMD_WRITE and length <= 4096:
            raw += bytes(length)
        conn.receive_data(raw)
        for ev in drain(conn):
            if isinstance(ev, NbdRequest):
                assert ev.offset + ev.length <= EXPORT.size or ev.command == p.CMD_FLUSH
                assert ev.command in (p.CMD_READ, p.CMD_WRITE, p.CMD_FLUSH, p.CMD_TRIM, p.CMD_WRITE_ZEROES)
            elif isinstance(ev, NbdDisconnect):
                return


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([p.CMD_READ, p.CMD_WRITE, p.CMD_FLUSH]), st.integers(0, 255), st.binary()),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
    st.lists(st.booleans(), max_size=10),
)
def test_requests_come_out_the_same_whatever_the_chunking(
    reqs: list[tuple[int, int, bytes]], cuts: list[int], drain_after: list[bool]
) -> None:
    """In-place parsing of a received chunk and requests split across chunks agree (order too)."""
    stream = b""
    expected = []
    for handle, (cmd, block, payload) in enumerate(reqs):
        length = len(payload) if cmd == p.CMD_WRITE else (512 if cmd == p.CMD_READ else 0)
        offset = 0 if cmd == p.CMD_FLUSH else block * 512
        stream += request(cmd, offset, length, handle=handle) + (payload if cmd == p.CMD_WRITE else b"")
        expected.append(NbdRequest(handle, cmd, 0, offset, length, payload if cmd == p.CMD_WRITE else b""))
    conn = negotiated()
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    got: list[object] = []
    for i, (start, end) in enumerate(itertools.pairwise(points)):
        conn.receive_data(stream[start:end])
        if i < len(drain_after) and not drain_after[i]:
            continue  # a second chunk before the first is parsed
        got += drain(conn)
    got += drain(conn)
    assert got == expected
