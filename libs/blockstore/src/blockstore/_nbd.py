"""Sans-I/O NBD server protocol core: bytes in, events and bytes out; no sockets, no clock.

Shaped like h11's ``Connection``: the driver feeds received bytes with :meth:`receive_data`, pulls
events with :meth:`next_event` and writes whatever :meth:`data_to_send` returns. The handshake
(fixed newstyle, option haggling) is answered inside the core; the driver only sees
:class:`NbdRequest` events for valid transmission requests, and formats their replies with
:meth:`reply` / :meth:`read_reply`. Invalid requests are answered with an NBD error by the core
itself and never reach the driver, so a malformed client cannot make the server do anything but
refuse politely (or, for framing violations it cannot resynchronise from, hang up).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final, NamedTuple

import attrs

from . import _nbd_proto as p

__all__ = [
    "ExportInfo",
    "NbdRequest",
    "NbdExportChosen",
    "NbdDisconnect",
    "NbdStartTls",
    "NeedData",
    "NEED_DATA",
    "NbdEvent",
    "NbdServerConnection",
    "MIN_BLOCK_SIZE",
    "PREFERRED_BLOCK_SIZE",
    "MAX_PAYLOAD",
]

MIN_BLOCK_SIZE: Final = 512
PREFERRED_BLOCK_SIZE: Final = 4096
MAX_PAYLOAD: Final = 32 * 1024 * 1024
# No option we understand carries more than a 4 KiB name plus a few info requests.
MAX_OPTION_LENGTH: Final = 64 * 1024
_NAME_LIMIT: Final = 4096

_OPT_HEADER = struct.Struct(">QII")
_REQ_HEADER = struct.Struct(">IHHQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")
_STRUCT_REPLY = struct.Struct(">IHHQI")
_REP_HEADER = struct.Struct(">QIII")
_DATA_CHUNK = struct.Struct(">IHHQIQ")  # structured reply header + the OFFSET_DATA offset
_STRUCT_MAGIC: Final = p.STRUCTURED_REPLY_MAGIC
_SIMPLE_MAGIC: Final = p.SIMPLE_REPLY_MAGIC
_DATA_FLAGS: Final = p.REPLY_FLAG_DONE
_OFFSET_DATA: Final = p.REPLY_TYPE_OFFSET_DATA

_REQUEST_MAGIC: Final = p.REQUEST_MAGIC
_CMD_READ: Final = p.CMD_READ
_CMD_WRITE: Final = p.CMD_WRITE
_CMD_DISC: Final = p.CMD_DISC
_CMD_FLUSH: Final = p.CMD_FLUSH
_DATA_COMMANDS: Final = frozenset((p.CMD_READ, p.CMD_WRITE, p.CMD_TRIM, p.CMD_WRITE_ZEROES))
_KNOWN_CMD_FLAGS: Final = (
    p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE | p.CMD_FLAG_DF | p.CMD_FLAG_REQ_ONE | p.CMD_FLAG_FAST_ZERO
)


def _valid_name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if len(value.encode()) > _NAME_LIMIT or "\x00" in value:
        raise ValueError(f"{attribute.name} must be at most {_NAME_LIMIT} UTF-8 bytes without NUL")


@attrs.frozen
class ExportInfo:
    """What the server tells clients about one export."""

    name: str = attrs.field(validator=_valid_name)
    size: int = attrs.field(validator=attrs.validators.ge(0))
    read_only: bool = False
    # True only when a FLUSH on one connection covers writes completed on every other connection.
    can_multi_conn: bool = False
    description: str = attrs.field(default="", validator=_valid_name)

    @property
    def transmission_flags(self) -> int:
        flags = (
            p.TFLAG_HAS_FLAGS
            | p.TFLAG_SEND_FLUSH
            | p.TFLAG_SEND_FUA
            | p.TFLAG_SEND_TRIM
            | p.TFLAG_SEND_WRITE_ZEROES
            | p.TFLAG_SEND_DF
        )
        if self.read_only:
            flags |= p.TFLAG_READ_ONLY
        if self.can_multi_conn:
            flags |= p.TFLAG_CAN_MULTI_CONN
        return flags


class NbdRequest(NamedTuple):
    """A valid transmission-phase request (bounds and flags already checked by the core).

    A named tuple rather than an attrs class: one is built per request, and building a frozen
    attrs instance cost twice as much (0.7 us against 0.35 us, ~3% of a 4 KiB write).
    """

    handle: int
    command: int
    flags: int
    offset: int
    length: int
    data: bytes = b""

    @property
    def fua(self) -> bool:
        return bool(self.flags & p.CMD_FLAG_FUA)


@attrs.frozen
class NbdExportChosen:
    """Option haggling finished: transmission on ``export`` starts."""

    export: ExportInfo


@attrs.frozen
class NbdStartTls:
    """The client asked for TLS and was told yes: the driver must run the TLS handshake now,
    then keep feeding the decrypted bytes to the same connection object."""


@attrs.frozen
class NbdDisconnect:
    """The session is over. ``clean`` is False when the peer broke the protocol (hard disconnect)."""

    clean: bool
    reason: str = ""


class NeedData:
    """Sentinel type: the core needs more bytes before it can produce another event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
NbdEvent = NbdRequest | NbdExportChosen | NbdStartTls | NbdDisconnect | NeedData

_CLIENT_FLAGS, _OPTIONS, _TRANSMISSION, _CLOSED = range(4)


class NbdServerConnection:
    """Server side of one NBD connection."""

    def __init__(
        self,
        exports: Mapping[str, ExportInfo],
        default_export: str | None = None,
        *,
        tls: str = "off",
    ) -> None:
        """``tls``: ``"off"`` (STARTTLS unsupported), ``"optional"`` or ``"required"`` (every
        option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD until TLS is up)."""
        if tls not in ("off", "optional", "required"):
            raise ValueError(f"tls={tls!r}: must be 'off', 'optional' or 'required'")
        self._tls = tls
        self.tls_active = False
        self._exports = dict(exports)
        if default_export is None and len(self._exports) == 1:
            default_export = next(iter(self._exports))
        self._default = default_export
        self._buf = bytearray()
        # In transmission, a received chunk is parsed in place while _buf is empty (one copy per
        # write payload instead of two); only a request split across chunks goes through _buf.
        self._chunk = b""
        self._pos = 0
        self._out = bytearray()
        self._state = _CLIENT_FLAGS
        self._no_zeroes = False
        self._eof = False
        self.structured_replies = False
        self.export: ExportInfo | None = None
        self._out += struct.pack(">QQH", p.INIT_MAGIC, p.OPTS_MAGIC, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)

    # -- driver interface ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the client closed its side."""
        if not data:
            self._eof = True
        elif self._pos < len(self._chunk):  # unread bytes of the previous chunk go first
            self._buf += memoryview(self._chunk)[self._pos :]
            self._buf += data
            self._chunk, self._pos = b"", 0
        elif self._buf or self._state != _TRANSMISSION:
            self._buf += data
        else:
            self._chunk, self._pos = data, 0

    def data_to_send(self) -> bytes:
        """Bytes the core wants written to the client (handshake replies, error replies)."""
        if not self._out:  # the common case: called after every request
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> NbdEvent:
        while True:
            if self._state == _CLOSED:
                return NbdDisconnect(clean=True, reason="closed")
            event = self._step()
            if event is None:
                continue
            if isinstance(event, NbdRequest):  # the hot path: one more request of a received batch
                return event
            if isinstance(event, NeedData) and self._eof:
                self._state = _CLOSED
                return NbdDisconnect(clean=False, reason="client closed the connection")
            if isinstance(event, NbdDisconnect):
                self._state = _CLOSED
            return event

    def reply(self, handle: int, error: int = 0, message: str = "") -> bytes:
        """Reply to a non-read request (or any error), in the negotiated style."""
        if error and self.structured_replies:
            msg = message.encode()[:_NAME_LIMIT]
            payload = struct.pack(">IH", error, len(msg)) + msg
            return (
                _STRUCT_REPLY.pack(
                    p.STRUCTURED_REPLY_MAGIC, p.REPLY_FLAG_DONE, p.REPLY_TYPE_ERROR, handle, len(payload)
                )
                + payload
            )
        return _SIMPLE_REPLY.pack(p.SIMPLE_REPLY_MAGIC, error, handle)

    def read_reply(self, handle: int, offset: int, data: bytes) -> bytes:
        """Successful read reply: one OFFSET_DATA chunk (structured) or a simple reply plus data."""
        return self.read_reply_header(handle, offset, len(data)) + data

    def read_reply_header(self, handle: int, offset: int, length: int) -> bytes:
        """What precedes ``length`` bytes of data in :meth:`read_reply` (a driver that writes
        header and data in one gather saves copying the data once more)."""
        if self.structured_replies:  # one OFFSET_DATA chunk header and its offset, one pack
            return _DATA_CHUNK.pack(_STRUCT_MAGIC, _DATA_FLAGS, _OFFSET_DATA, handle, 8 + length, offset)
        return _SIMPLE_REPLY.pack(_SIMPLE_MAGIC, 0, handle)

    # -- state machine ------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def _step(self) -> NbdEvent | None:
        if self._state == _TRANSMISSION:  # checked first: every request comes this way
            return self._step_request()
        if self._state == _CLIENT_FLAGS:
            if len(self._buf) < 4:
                return NEED_DATA
            (flags,) = struct.unpack(">I", self._take(4))
            if flags & ~(p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES):
                return NbdDisconnect(clean=False, reason=f"unknown client flags {flags:#x}")
            self._no_zeroes = bool(flags & p.FLAG_C_NO_ZEROES)
            self._state = _OPTIONS
            return None
        if self._state == _OPTIONS:
            return self._step_option()
        return self._step_request()  # _CLOSED: nothing more is parsed (next_event returns first)

    def _option_reply(self, option: int, reply: int, data: bytes = b"") -> None:
        self._out += _REP_HEADER.pack(p.REP_MAGIC, option, reply, len(data)) + data

    def _lookup(self, name: str) -> ExportInfo | None:
        if name == "" and self._default is not None:
            return self._exports.get(self._default)
        return self._exports.get(name)

    def _step_option(self) -> NbdEvent | None:
        if len(self._buf) < _OPT_HEADER.size:
            return NEED_DATA
        magic, option, length = _OPT_HEADER.unpack_from(self._buf)
        if magic != p.OPTS_MAGIC:
            return NbdDisconnect(clean=False, reason=f"bad option magic {magic:#x}")
        if length > MAX_OPTION_LENGTH:
            return NbdDisconnect(clean=False, reason=f"option length {length} exceeds {MAX_OPTION_LENGTH}")
        if len(self._buf) < _OPT_HEADER.size + length:
            return NEED_DATA
        del self._buf[: _OPT_HEADER.size]
        data = self._take(length)
        if option == p.OPT_STARTTLS:
            if self._tls == "off":
                self._option_reply(option, p.REP_ERR_UNSUP)
                return None
            if self.tls_active or length:
                self._option_reply(option, p.REP_ERR_INVALID)
                return None
            if self._buf:  # the client may send nothing more until the TLS handshake is done
                return NbdDisconnect(
                    clean=False, reason="data after NBD_OPT_STARTTLS before the TLS handshake"
                )
            self._option_reply(option, p.REP_ACK)
            self.tls_active = True
            return NbdStartTls()
        if self._tls == "required" and not self.tls_active and option != p.OPT_ABORT:
            if option == p.OPT_EXPORT_NAME:
                return NbdDisconnect(clean=False, reason="NBD_OPT_EXPORT_NAME without the required TLS")
            self._option_reply(option, p.REP_ERR_TLS_REQD)
            return None
        if option == p.OPT_EXPORT_NAME:
            export = self._lookup(data.decode("utf-8", "replace"))
            if export is None:
                return NbdDisconnect(clean=False, reason="unknown export requested with EXPORT_NAME")
            self._out += struct.pack(">QH", export.size, export.transmission_flags)
            if not self._no_zeroes:
                self._out += bytes(124)
            return self._enter_transmission(export)
        if option == p.OPT_ABORT:
            self._option_reply(option, p.REP_ACK)
            return NbdDisconnect(clean=True, reason="client aborted negotiation")
        if option == p.OPT_LIST:
            if length:
                self._option_reply(option, p.REP_ERR_INVALID)
                return None
            for name in self._exports:
                raw = name.encode()
                self._option_reply(option, p.REP_SERVER, len(raw).to_bytes(4, "big") + raw)
            self._option_reply(option, p.REP_ACK)
            return None
        if option == p.OPT_STRUCTURED_REPLY:
            if length:
                self._option_reply(option, p.REP_ERR_INVALID)
            else:
                self.structured_replies = True
                self._option_reply(option, p.REP_ACK)
            return None
        if option in (p.OPT_INFO, p.OPT_GO):
            return self._info_or_go(option, data)
        self._option_reply(option, p.REP_ERR_UNSUP)
        return None

    def _info_or_go(self, option: int, data: bytes) -> NbdEvent | None:
        if len(data) < 6:
            self._option_reply(option, p.REP_ERR_INVALID)
            return None
        namelen = int.from_bytes(data[:4], "big")
        if namelen > len(data) - 6:
            self._option_reply(option, p.REP_ERR_INVALID)
            return None
        name = data[4 : 4 + namelen]
        count = int.from_bytes(data[4 + namelen : 6 + namelen], "big")
        requests = data[6 + namelen :]
        if len(requests) != 2 * count:
            self._option_reply(option, p.REP_ERR_INVALID)
            return None
        wanted = {int.from_bytes(requests[i : i + 2], "big") for i in range(0, len(requests), 2)}
        export = self._lookup(name.decode("utf-8", "replace"))
        if export is None:
            self._option_reply(option, p.REP_ERR_UNKNOWN)
            return None
        self._option_reply(
            option, p.REP_INFO, struct.pack(">HQH", p.INFO_EXPORT, export.size, export.transmission_flags)
        )
        self._option_reply(
            option,
            p.REP_INFO,
            struct.pack(">HIII", p.INFO_BLOCK_SIZE, MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD),
        )
        if p.INFO_NAME in wanted:
            self._option_reply(option, p.REP_INFO, struct.pack(">H", p.INFO_NAME) + export.name.encode())
        if p.INFO_DESCRIPTION in wanted and export.description:
            self._option_reply(
                option, p.REP_INFO, struct.pack(">H", p.INFO_DESCRIPTION) + export.description.encode()
            )
        self._option_reply(option, p.REP_ACK)
        if option == p.OPT_GO:
            return self._enter_transmission(export)
        return None

    def _enter_transmission(self, export: ExportInfo) -> NbdEvent:
        self.export = export
        self._state = _TRANSMISSION
        return NbdExportChosen(export)

    def _step_request(self) -> NbdEvent | None:
        chunk, pos = self._chunk, self._pos
        if pos < len(chunk):  # parse in place from the received chunk
            if len(chunk) - pos < _REQ_HEADER.size:
                self._spill()
                return NEED_DATA
            magic, flags, command, handle, offset, length = _REQ_HEADER.unpack_from(chunk, pos)
            if magic != _REQUEST_MAGIC:
                return NbdDisconnect(clean=False, reason=f"bad request magic {magic:#x}")
            start = pos + _REQ_HEADER.size
            if command == _CMD_WRITE:
                if length > MAX_PAYLOAD:
                    return NbdDisconnect(clean=False, reason=f"write payload {length} exceeds {MAX_PAYLOAD}")
                if len(chunk) < start + length:
                    self._spill()
                    return NEED_DATA
                data = chunk[start : start + length]
                self._pos = start + length
            else:
                data = b""
                self._pos = start
        else:
            buf = self._buf
            if len(buf) < _REQ_HEADER.size:
                return NEED_DATA
            magic, flags, command, handle, offset, length = _REQ_HEADER.unpack_from(buf)
            if magic != _REQUEST_MAGIC:
                return NbdDisconnect(clean=False, reason=f"bad request magic {magic:#x}")
            if command == _CMD_WRITE:
                if length > MAX_PAYLOAD:
                    return NbdDisconnect(clean=False, reason=f"write payload {length} exceeds {MAX_PAYLOAD}")
                if len(buf) < _REQ_HEADER.size + length:
                    return NEED_DATA
                with memoryview(buf) as view:  # one copy (a bytearray slice would be a second)
                    data = bytes(view[_REQ_HEADER.size : _REQ_HEADER.size + length])
                del buf[: _REQ_HEADER.size + length]
            else:
                data = b""
                del buf[: _REQ_HEADER.size]
        if command == _CMD_DISC:
            return NbdDisconnect(clean=True, reason="client sent NBD_CMD_DISC")
        error = self._validate(command, flags, offset, length)
        if error:
            self._out += self.reply(handle, error, f"request rejected (command {command}, error {error})")
            return None
        return NbdRequest(handle, command, flags, offset, length, data)

    def _spill(self) -> None:
        """A request continues past the chunk: keep its start in ``_buf`` for the next one."""
        self._buf += memoryview(self._chunk)[self._pos :]
        self._chunk, self._pos = b"", 0

    def _validate(self, command: int, flags: int, offset: int, length: int) -> int:
        export = self.export
        assert export is not None
        if flags & ~_KNOWN_CMD_FLAGS:
            return p.EINVAL
        if command == _CMD_FLUSH:
            return 0
        if command not in _DATA_COMMANDS:
            return p.EINVAL
        if command == _CMD_READ:
            if length == 0 or length > MAX_PAYLOAD:
                return p.EINVAL
        elif export.read_only:
            return p.EPERM
        if offset + length > export.size:
            return p.EINVAL if command == _CMD_READ else p.ENOSPC
        return 0
