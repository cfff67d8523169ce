"""The client side of PBFT: sign a request, send it to every replica, accept f+1 matching replies."""

from __future__ import annotations

from collections.abc import Sequence

from bftconsensus._actions import Action, Send, SetTimer
from bftconsensus._certs import faults_tolerated
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import BftConsensusError, ConfigError, DecodeError
from bftconsensus._pb.bftconsensus import v1 as pb
from bftconsensus._wire import DEFAULT_LIMITS, Kind, WireLimits, decode_frame, open_signed, seal

__all__ = ["Client"]


class Client:
    """Sans-I/O client with one request outstanding at a time (PBFT's exactly-once rule needs
    a client's timestamps to execute in order). Use several clients for concurrency.

    f+1 matching replies prove the result: at least one of them is from an honest replica, and an
    honest replica replies only after the request committed.
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
        self.timestamp = first_timestamp - 1
        self._frame: bytes | None = None
        self._replies: dict[bytes, set[str]] = {}
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
            reply = open_signed(self.keys, env, pb.Reply, self.limits)
        except DecodeError:
            return []
        if reply.client != self.signer.node_id or reply.timestamp != self.timestamp or reply.replica != src:
            return []
        who = self._replies.setdefault(reply.result, set())
        who.add(src)
        if len(who) >= self.f + 1:
            self.result = reply.result
            self.completed.append((self.timestamp, reply.result))
            self._frame = None
        return []

    def timer(self, tag: str) -> list[Action]:
        if tag == "retransmit" and self._frame is not None:
            return self._send_all()
        return []
