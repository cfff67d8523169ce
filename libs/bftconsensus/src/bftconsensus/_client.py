"""The client side of PBFT: sign a request and authenticate it to every replica, send it to the
primary (to every replica when retransmitting), accept f+1 matching replies."""

from __future__ import annotations

from collections.abc import Sequence

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, Send, SetTimer
from bftconsensus._certs import faults_tolerated, primary_of
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import BftConsensusError, ConfigError, DecodeError
from bftconsensus._macs import authenticator, derive_key
from bftconsensus._wire import (
    BATCH_OVERHEAD,
    DEFAULT_LIMITS,
    Kind,
    WireLimits,
    decode_uncached,
    open_signed,
    open_uncached,
    request_bytes,
    seal,
)

__all__ = ["Client", "read_replies"]


class Client:
    """Sans-I/O client with one request outstanding at a time (PBFT's exactly-once rule needs
    a client's timestamps to execute in order). Use several clients for concurrency.

    f+1 matching replies prove the result: at least one of them is from an honest replica, and an
    honest replica replies only after the request committed. Each reply must come from the replica
    it names over a channel that authenticates that replica (``src``); a signed reply is verified
    too, and ``require_signed_replies`` refuses unsigned ones (for replicas configured with
    ``sign_all_messages``).

    As in PBFT, a request goes to the primary the client believes in (of the latest view f+1
    replicas vouched for) and, when no reply came in time, to every replica, which then start
    their view-change timers. Each request is signed and carries a MAC authenticator (see
    :mod:`bftconsensus._macs`): a backup that gave the client's key (``link_frame(peer, replica)``)
    accepts the request in the primary's batch on its tag, a keyed BLAKE2b MAC, instead of an Ed25519
    verification; without a key or with a bad tag it checks the signature.
    """

    def __init__(
        self,
        signer: Signer,
        keys: KeyDirectory,
        replicas: Sequence[str],
        *,
        retransmit: float = 1.0,
        first_timestamp: int = 1,
        limits: WireLimits = DEFAULT_LIMITS,
        require_signed_replies: bool = False,
    ) -> None:
        if not replicas:
            raise ConfigError("Client.replicas must name at least one replica")
        if retransmit <= 0:
            raise ConfigError(f"Client.retransmit must be > 0 seconds, got {retransmit!r}")
        self.signer = signer
        self.keys = keys
        self.replicas = tuple(replicas)
        self.retransmit = retransmit
        self.limits = limits
        self.require_signed_replies = require_signed_replies
        self.timestamp = first_timestamp - 1
        self.view = 0  # the latest view f+1 replicas vouched for
        self._frame: bytes | None = None
        self._replies: dict[bytes, dict[str, int]] = {}
        self.result: bytes | None = None
        self.completed: list[tuple[int, bytes]] = []
        self._mac_keys = [derive_key(signer, r) for r in self.replicas]

    @property
    def f(self) -> int:
        return faults_tolerated(len(self.replicas))

    @property
    def busy(self) -> bool:
        return self._frame is not None

    def submit(self, operation: bytes) -> list[Action]:
        if self._frame is not None:
            raise BftConsensusError(
                f"client {self.signer.node_id!r} already has request {self.timestamp} outstanding"
            )
        timestamp = self.timestamp + 1
        env = seal(
            self.signer, Kind.CLIENT_REQUEST, pb.ClientRequest(self.signer.node_id, timestamp, operation)
        )
        env.macs = authenticator(self._mac_keys, env.kind, env.signer, env.body)
        frame = bytes(env)
        room = self.limits.max_frame_bytes - BATCH_OVERHEAD
        if request_bytes(env) > room:  # no pre-prepare could carry it: it would never complete
            raise BftConsensusError(
                f"an operation of {len(operation)} bytes makes a {len(frame)}-byte request; a batch "
                f"carries at most {room} (WireLimits.max_frame_bytes {self.limits.max_frame_bytes} less "
                f"{BATCH_OVERHEAD} for the pre-prepare)"
            )
        self.timestamp = timestamp
        self.result = None
        self._replies = {}
        self._frame = frame
        primary = primary_of(self.replicas, self.view)
        return [Send(primary, self._frame), SetTimer("retransmit", self.retransmit)]

    def link_frame(self, peer: str, replica: str | None = None) -> bytes:
        """A signed grant for ``peer`` to carry this client's requests (see ``ClientLinks``).

        Send it to each replica on the link of ``peer`` (this client's own node id when it talks
        to the replicas itself) before the requests: replicas then take the requests from that
        link as this client's without checking each signature. With ``replica``, the grant also
        gives that replica this client's MAC key: send it to that replica alone.
        """
        key = b""
        if replica is not None:
            if replica not in self.replicas:
                raise BftConsensusError(f"{replica!r} is not one of this client's replicas")
            key = self._mac_keys[self.replicas.index(replica)]
        return bytes(seal(self.signer, Kind.CLIENT_LINK, pb.ClientLink(self.signer.node_id, peer, key)))

    def _send_all(self) -> list[Action]:
        assert self._frame is not None
        return [*(Send(r, self._frame) for r in self.replicas), SetTimer("retransmit", self.retransmit)]

    def receive(self, src: str, frame: bytes) -> list[Action]:
        if self._frame is None:
            return []
        parsed = read_replies(frame, self.limits)
        if parsed is not None:
            env, replies = parsed
            for reply in replies:
                self.take_reply(src, env, reply)
        return []

    def take_reply(self, src: str, env: pb.Signed, reply: pb.Reply) -> None:
        """Count a reply already decoded by `read_replies` (what ``receive`` does with a frame;
        ``env`` is the frame's envelope, a REPLY or a REPLIES).

        A driver that reads one connection for many clients decodes each frame once to find the
        clients of its replies, then hands each over here instead of the frame.
        """
        if self._frame is None or env.signer != src or src not in self.replicas:
            return
        if env.signature or self.require_signed_replies:
            try:
                reply = open_signed(self.keys, env, pb.Reply, self.limits)
            except DecodeError:
                return
        if reply.client != self.signer.node_id or reply.timestamp != self.timestamp or reply.replica != src:
            return
        who = self._replies.setdefault(reply.result, {})
        who[src] = reply.view
        if len(who) >= self.f + 1:
            # At least one of f+1 is honest, so some honest replica is in a view >= the smallest.
            self.view = max(self.view, min(who.values()))
            self.result = reply.result
            self.completed.append((self.timestamp, reply.result))
            self._frame = None

    def timer(self, tag: str) -> list[Action]:
        if tag == "retransmit" and self._frame is not None:
            return self._send_all()
        return []


def read_replies(
    frame: bytes, limits: WireLimits = DEFAULT_LIMITS
) -> tuple[pb.Signed, list[pb.Reply]] | None:
    """A reply frame's envelope and the replies in it (one for a REPLY, any number for a
    REPLIES), signatures unchecked; None for anything else.

    Decoded once and kept out of the replica-side caches of `decode_frame`: a client meets each
    reply once, and one connection may carry the replies of many clients, so the driver reads
    the addressee of each from its body and hands it to that client's `Client.take_reply`.
    """
    try:
        env = decode_uncached(frame, limits)
        if env.kind == _REPLY:
            return env, [open_uncached(env, pb.Reply, limits)]
        if env.kind == _REPLIES:
            return env, open_uncached(env, pb.Replies, limits).replies
        return None
    except DecodeError:
        return None


_REPLY = int(Kind.REPLY)
_REPLIES = int(Kind.REPLIES)
