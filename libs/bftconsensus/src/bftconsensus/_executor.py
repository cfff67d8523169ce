"""The executor side of commit-reveal: compute, commit to the result, reveal only when asked."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, Send
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import DecodeError, UnknownFunctionError
from bftconsensus._evidence import commit_digest
from bftconsensus._wire import DEFAULT_LIMITS, Kind, WireLimits, decode_frame, open_signed, seal

__all__ = ["Executor", "DeterministicFunction"]

DeterministicFunction = Callable[[bytes], bytes]


class Executor:
    """Sans-I/O executor. Feed it frames with :meth:`receive`; send the frames it returns.

    It answers an ``ExecuteRequest`` with a signed commit and keeps (result, nonce) until the
    coordinator's ``RevealRequest`` for that attempt arrives; only then does the result leave the
    node, so no executor can copy another's result from the wire during the commit phase.
    """

    def __init__(
        self,
        signer: Signer,
        keys: KeyDirectory,
        functions: Mapping[str, DeterministicFunction],
        *,
        randbytes: Callable[[int], bytes] = os.urandom,
        max_pending: int = 10_000,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        self.signer = signer
        self.keys = keys
        self.functions = dict(functions)
        self._randbytes = randbytes
        self._pending: OrderedDict[tuple[str, int], tuple[bytes, bytes]] = OrderedDict()
        self._max_pending = max_pending
        self._limits = limits

    def compute(self, function: str, data: bytes) -> bytes:
        """Run the named function (override to model a faulty executor)."""
        fn = self.functions.get(function)
        if fn is None:
            raise UnknownFunctionError(
                f"function {function!r} is not registered; known: {sorted(self.functions)}"
            )
        return fn(data)

    def make_commit(self, op: pb.Operation, attempt: int, result: bytes, nonce: bytes) -> pb.Signed:
        digest = commit_digest(result, nonce, self.signer.node_id, op.op_id)
        return seal(self.signer, Kind.COMMIT, pb.Commit(op.op_id, attempt, self.signer.node_id, digest))

    def make_reveal(self, op_id: str, attempt: int, result: bytes, nonce: bytes) -> pb.Signed | None:
        return seal(self.signer, Kind.REVEAL, pb.Reveal(op_id, attempt, self.signer.node_id, result, nonce))

    def receive(self, src: str, frame: bytes) -> list[Action]:
        """Handle one frame from ``src``; malformed or unauthenticated input is dropped."""
        try:
            env = decode_frame(frame, self._limits)
            if env.signer != src:
                return []
            if env.kind == Kind.EXECUTE_REQUEST:
                return self._on_execute(src, open_signed(self.keys, env, pb.ExecuteRequest, self._limits))
            if env.kind == Kind.REVEAL_REQUEST:
                return self._on_reveal(src, open_signed(self.keys, env, pb.RevealRequest, self._limits))
        except (DecodeError, UnknownFunctionError):
            return []
        return []

    def _on_execute(self, src: str, req: pb.ExecuteRequest) -> list[Action]:
        op = open_signed(self.keys, req.operation, pb.Operation, self._limits)
        key = (op.op_id, req.attempt)
        if key in self._pending:  # duplicate request: re-send the same commit, never a new one
            result, nonce = self._pending[key]
        else:
            result = self.compute(op.function, op.input)
            nonce = self._randbytes(32)
            self._pending[key] = (result, nonce)
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
        return [Send(src, bytes(self.make_commit(op, req.attempt, result, nonce)))]

    def _on_reveal(self, src: str, req: pb.RevealRequest) -> list[Action]:
        held = self._pending.get((req.op_id, req.attempt))
        if held is None:
            return []
        reveal = self.make_reveal(req.op_id, req.attempt, *held)
        return [] if reveal is None else [Send(src, bytes(reveal))]
