"""The client side of PBFT: sign a request, send it to every replica, accept f+1 matching
replies."""

from __future__ import annotations

from collections.abc import Sequence

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, Send, SetTimer
from bftconsensus._certs import faults_tolerated
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import BftConsensusError, ConfigError, DecodeError
from bftconsensus._wire import (
    DEFAULT_LIMITS,
    Kind,
    WireLimits,
    decode_frame,
    open_signed,
    open_unsigned,
    seal,
)

__all__ = ["Client", "reply_addressee"]


class Client:
    """Sans-I/O client with one request outstanding at a time (PBFT's exactly-once rule needs
    a client's timestamps to execute in order). Use several clients for concurrency.

    f+1 matching replies prove the result: at least one of them is from an honest replica, and an
    honest replica replies only after the request committed. Each reply must come from the replica
    it names over a channel that authenticates that replica (``src``); a signed reply is verified
    too, and ``require_signed_replies`` refuses unsigned ones (for replicas configured with
    ``sign_all_messages``).

    A request goes to every replica, over links that authenticate this client: a backup that
    holds the client's own copy accepts it in the primary's batch without checking its signature
    (the signature is what a backup that missed the copy checks instead), and every backup's
    timer runs, so a faulty primary is replaced. PBFT sends to the primary first and to everyone
    on retransmission; sending to everyone at once costs a frame per backup and saves each backup
    an Ed25519 verification, several times dearer.
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
        self.timestamp += 1
        self.result = None
        self._replies = {}
        env = seal(
            self.signer, Kind.CLIENT_REQUEST, pb.ClientRequest(self.signer.node_id, self.timestamp, operation)
        )
        self._frame = bytes(env)
        return self._send_all()

    def link_frame(self, peer: str) -> bytes:
        """A signed grant for ``peer`` to carry this client's requests (see ``ClientLinks``).

        For a client whose requests travel over another node's link (many clients in one
        process): send it to each replica on that link before the requests, and replicas take
        the requests from that link as this client's without checking each signature.
        """
        return bytes(seal(self.signer, Kind.CLIENT_LINK, pb.ClientLink(self.signer.node_id, peer)))

    def _send_all(self) -> list[Action]:
        assert self._frame is not None
        return [*(Send(r, self._frame) for r in self.replicas), SetTimer("retransmit", self.retransmit)]

    def receive(self, src: str, frame: bytes) -> list[Action]:
        if self._frame is None:
            return []
        try:
            env = decode_frame(frame, self.limits)
            if env.signer != src or src not in self.replicas:
                return []
            if env.signature or self.require_signed_replies:
                reply = open_signed(self.keys, env, pb.Reply, self.limits)
            else:
                reply = open_unsigned(env, pb.Reply, self.limits)
        except DecodeError:
            return []
        if reply.client != self.signer.node_id or reply.timestamp != self.timestamp or reply.replica != src:
            return []
        who = self._replies.setdefault(reply.result, {})
        who[src] = reply.view
        if len(who) >= self.f + 1:
            # At least one of f+1 is honest, so some honest replica is in a view >= the smallest.
            self.view = max(self.view, min(who.values()))
            self.result = reply.result
            self.completed.append((self.timestamp, reply.result))
            self._frame = None
        return []

    def timer(self, tag: str) -> list[Action]:
        if tag == "retransmit" and self._frame is not None:
            return self._send_all()
        return []


def reply_addressee(frame: bytes, limits: WireLimits = DEFAULT_LIMITS) -> str | None:
    """The client a reply frame is addressed to (unverified; the client core checks the rest).

    Lets one connection carry the replies of many clients; None for anything that is not a
    well-formed reply.
    """
    try:
        env = decode_frame(frame, limits)
        if env.kind != int(Kind.REPLY):
            return None
        return open_unsigned(env, pb.Reply, limits).client
    except DecodeError:
        return None
