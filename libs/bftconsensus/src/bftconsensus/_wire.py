"""Bounded encoding and decoding of the wire messages in ``protos/bftconsensus.proto``.

Every frame is a ``Signed`` envelope. Decoding checks the frame length before parsing and every
string, bytes and repeated field against :class:`WireLimits` while parsing (see
:mod:`bftconsensus._messages`); opening an envelope also checks its kind and signature.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

from bftconsensus import _messages as pb
from bftconsensus._crypto import KeyDirectory, Signer, signing_payload, verify
from bftconsensus._errors import DecodeError
from bftconsensus._protocodec import DEFAULT_LIMITS, WireLimits, length_delimited

__all__ = [
    "Kind",
    "WireLimits",
    "seal",
    "BATCH_OVERHEAD",
    "request_bytes",
    "replies_frames",
    "decode_frame",
    "decode_uncached",
    "open_signed",
    "open_unsigned",
    "open_uncached",
    "DEFAULT_LIMITS",
]


class Kind(enum.IntEnum):
    """What a ``Signed`` body holds (part of the signed bytes)."""

    OPERATION = 1
    EXECUTE_REQUEST = 2
    COMMIT = 3
    REVEAL_REQUEST = 4
    REVEAL = 5
    VERDICT = 6
    CLIENT_REQUEST = 10
    PRE_PREPARE = 11
    PREPARE = 12
    COMMIT_VOTE = 13
    REPLY = 14
    CHECKPOINT = 15
    VIEW_CHANGE = 16
    NEW_VIEW = 17
    STATE_REQUEST = 18
    STATE_RESPONSE = 19
    CLIENT_LINK = 20
    REPLIES = 21


_BODY: dict[Kind, type[pb.Message]] = {
    Kind.OPERATION: pb.Operation,
    Kind.EXECUTE_REQUEST: pb.ExecuteRequest,
    Kind.COMMIT: pb.Commit,
    Kind.REVEAL_REQUEST: pb.RevealRequest,
    Kind.REVEAL: pb.Reveal,
    Kind.VERDICT: pb.Verdict,
    Kind.CLIENT_REQUEST: pb.ClientRequest,
    Kind.CLIENT_LINK: pb.ClientLink,
    Kind.PRE_PREPARE: pb.PrePrepare,
    Kind.PREPARE: pb.Prepare,
    Kind.COMMIT_VOTE: pb.CommitVote,
    Kind.REPLY: pb.Reply,
    Kind.REPLIES: pb.Replies,
    Kind.CHECKPOINT: pb.Checkpoint,
    Kind.VIEW_CHANGE: pb.ViewChange,
    Kind.NEW_VIEW: pb.NewView,
    Kind.STATE_REQUEST: pb.StateRequest,
    Kind.STATE_RESPONSE: pb.StateResponse,
}


KIND_OF: dict[int, Kind] = {int(k): k for k in Kind}
"""Each kind by its number: a dict lookup, where ``Kind(n)`` costs an enum call per frame."""

BATCH_OVERHEAD = 512
"""Bytes a pre-prepare frame holds besides its requests, at most (its view, sequence number,
digest and signed envelope, and each request's tag and length). A batch's requests must fit in
``max_frame_bytes`` less this, or backups would refuse the pre-prepare, and so would every next
primary; a request alone must too."""


def request_bytes(env: pb.Signed) -> int:
    """An upper bound on the bytes ``env`` takes in a pre-prepare, without encoding it."""
    return len(env.body) + len(env.signer) + len(env.signature) + len(env.macs) + 32


def replies_frames(signer: str, replies: Sequence[bytes], limits: WireLimits = DEFAULT_LIMITS) -> list[bytes]:
    """Unsigned REPLIES frames from ``signer`` carrying the encoded ``Reply`` messages in order:
    as few as ``limits`` allow (each within ``max_frame_bytes`` less ``BATCH_OVERHEAD`` for the
    envelope, at most ``max_repeated`` replies; a reply too large for that goes alone).

    Put together from the encoded replies: a ``Replies`` body is their concatenation, each as
    field 1 with its length.
    """
    frames: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    room = limits.max_frame_bytes - BATCH_OVERHEAD
    for reply in replies:
        entry = length_delimited(1, reply)  # Replies.replies
        if parts and (size + len(entry) > room or len(parts) == limits.max_repeated):
            frames.append(bytes(pb.Signed(int(Kind.REPLIES), b"".join(parts), signer)))
            parts, size = [], 0
        parts.append(entry)
        size += len(entry)
    if parts:
        frames.append(bytes(pb.Signed(int(Kind.REPLIES), b"".join(parts), signer)))
    return frames


M = TypeVar("M", bound=pb.Message)
K = TypeVar("K")
V = TypeVar("V")


def _parse(cls: type[M], data: bytes, limits: WireLimits, what: str) -> M:
    if len(data) > limits.max_frame_bytes:
        raise DecodeError(f"{what} is {len(data)} bytes, at most {limits.max_frame_bytes}")
    try:
        return cls().parse(data, limits)
    except DecodeError as exc:
        raise DecodeError(f"{what} is not a valid {cls.__name__}: {exc}") from None


def seal(signer: Signer, kind: Kind, body: pb.Message) -> pb.Signed:
    """Encode ``body`` and sign it as ``kind`` by ``signer``."""
    raw = bytes(body)
    sig = signer.sign(signing_payload(int(kind), signer.node_id, raw))
    return pb.Signed(kind=int(kind), body=raw, signer=signer.node_id, signature=sig)


# Verified, decoded messages keyed by everything their validity depends on. A replica meets the
# same signed request first on its own and again inside a pre-prepare, a view change and a
# new-view; verifying once is what PBFT implementations do too. Entries are never mutated.
_CACHE_ENTRIES = 16384
_CACHE_MAX_BYTES = 64 * 1024
_opened: OrderedDict[tuple[object, ...], pb.Message] = OrderedDict()
_frames: OrderedDict[tuple[bytes, WireLimits], pb.Signed] = OrderedDict()


def _remember(cache: OrderedDict[K, V], key: K, value: V, capacity: int = _CACHE_ENTRIES) -> None:
    """Put ``key`` in as the most recent entry, dropping the oldest beyond ``capacity``."""
    if key in cache:
        cache.move_to_end(key)
    cache[key] = value  # a new key goes in last
    if len(cache) > capacity:
        cache.popitem(last=False)


def decode_frame(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> pb.Signed:
    """Parse one untrusted frame into its envelope (signature not yet checked).

    The returned message may be shared with other callers: treat it as read-only.
    """
    small = len(data) <= _CACHE_MAX_BYTES
    if small:
        hit = _frames.get((data, limits))
        if hit is not None:
            return hit
    env = decode_uncached(data, limits)
    if small:
        _remember(_frames, (data, limits), env)
    return env


def decode_uncached(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> pb.Signed:
    """`decode_frame` without its cache: for frames met once (a client's replies)."""
    env = _parse(pb.Signed, data, limits, "frame")
    if env.kind not in KIND_OF:
        raise DecodeError(f"frame kind {env.kind} is unknown; valid kinds are {sorted(KIND_OF)}")
    return env


def open_signed(
    keys: KeyDirectory, env: pb.Signed, expected: type[M], limits: WireLimits = DEFAULT_LIMITS
) -> M:
    """Check the envelope's signature and kind, then decode its body as ``expected``."""
    kind = _kind_of(env, expected)
    key = (kind, env.signer, keys.get(env.signer), env.body, env.signature, limits)
    return _open(key, kind, env, expected, limits, keys)


def open_unsigned(env: pb.Signed, expected: type[M], limits: WireLimits = DEFAULT_LIMITS) -> M:
    """Decode a message that the channel it arrived on authenticates (no signature to check).

    Only for messages that are never relayed or kept as evidence (PBFT authenticates these with
    MACs; the meshnet mutual TLS stream that carried it does the same here): the caller must have
    checked that ``env.signer`` is the authenticated peer that sent it.
    """
    kind = _kind_of(env, expected)
    # a replica meets a request direct, in a batch and at execution: decoded once
    return _open((kind, env.body, limits), kind, env, expected, limits, None)


def open_uncached(env: pb.Signed, expected: type[M], limits: WireLimits = DEFAULT_LIMITS) -> M:
    """`open_unsigned` without its cache: for a message met once (a reply at its client)."""
    return _parse(expected, env.body, limits, _kind_of(env, expected).name.lower())


def _kind_of(env: pb.Signed, expected: type[M]) -> Kind:
    kind = KIND_OF.get(env.kind)
    if kind is None:
        raise DecodeError(f"message kind {env.kind} is unknown")
    if _BODY[kind] is not expected:
        raise DecodeError(f"expected a {expected.__name__}, got kind {kind.name}")
    return kind


def _open(
    key: tuple[object, ...],
    kind: Kind,
    env: pb.Signed,
    expected: type[M],
    limits: WireLimits,
    keys: KeyDirectory | None,
) -> M:
    """Verify (when ``keys`` is given) and decode, through the cache for small bodies."""
    small = len(env.body) <= _CACHE_MAX_BYTES
    if small:
        hit = _opened.get(key)
        if hit is not None:
            assert isinstance(hit, expected)
            return hit
    if keys is not None:
        verify(keys, int(kind), env.signer, env.body, env.signature)
        plain: pb.Message | None = _opened.get((kind, env.body, limits)) if small else None
        if plain is not None:  # decoded unverified before (a prepare tested for mootness, say)
            _remember(_opened, key, plain)
            assert isinstance(plain, expected)
            return plain
    msg = _parse(expected, env.body, limits, kind.name.lower())
    if small:
        entry: pb.Message = msg
        _remember(_opened, key, entry)
    return msg


def body_kind(cls: type[pb.Message]) -> Kind:
    """The kind under which messages of ``cls`` are signed."""
    for kind, c in _BODY.items():
        if c is cls:
            return kind
    raise KeyError(cls.__name__)
