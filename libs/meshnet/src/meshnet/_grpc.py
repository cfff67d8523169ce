"""gRPC (grpclib) over the same credentials as the stream transport.

Choice: gRPC connections are plain mutual TLS 1.3 (both sides' chains are enforced by OpenSSL, exactly
as for `connect`), plus an isolation proof in the metadata of every call::

    x-mesh-proof: <unix seconds>.<hex HMAC(K, "grpc-client" | client cert SHA-256 | seconds)>

The server recomputes it from the certificate of the TLS connection the call arrived on, so a proof
is useless with any other client certificate, and refuses proofs older than ``max_proof_age``. Unlike
the stream handshake, the gRPC proof is not bound to one connection's nonces (grpclib offers no hook
for an in-tunnel exchange before the first call), and the server proves itself by its certificate only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import time
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

import attrs
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.events import RecvRequest, SendRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.protocol import Peer
from grpclib.server import Server, Stream

from meshnet._credentials import MeshCredentials, PeerCheck
from meshnet._errors import HandshakeError, MeshnetError
from meshnet._observe import MeshnetMetrics, default_metrics, transport_log
from meshnet._peer import PeerInfo

__all__ = ["GrpcAuthenticator", "MeshGrpcServer", "grpc_channel", "verify_grpc_proof", "PROOF_METADATA_KEY"]

PROOF_METADATA_KEY = "x-mesh-proof"
_LABEL = b"mycelium-meshnet-grpc-client-v1"
_MAX_PROOF_CHARS = 128


def _grpc_mac(secret: bytes, client_fp: bytes, seconds: int) -> str:
    return hmac.new(secret, b"|".join((_LABEL, client_fp, str(seconds).encode())), hashlib.sha256).hexdigest()


_PROOF_SHAPE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})", re.ASCII)


def verify_grpc_proof(raw: object, secret: bytes, client_fp: bytes, *, now: float, max_age: float) -> None:
    """Check one call's ``x-mesh-proof`` value (network input); raises `HandshakeError` with a reason."""
    if not isinstance(raw, str) or not raw:
        raise HandshakeError("bad_proof", f"call carries no {PROOF_METADATA_KEY} metadata")
    match = _PROOF_SHAPE.fullmatch(raw) if len(raw) <= _MAX_PROOF_CHARS else None
    if match is None:
        raise HandshakeError("malformed", f"{PROOF_METADATA_KEY} must be '<seconds>.<64 hex digits>'")
    seconds = int(match.group(1))
    if abs(now - seconds) > max_age:
        raise HandshakeError(
            "replay", f"{PROOF_METADATA_KEY} is more than {max_age} s old (or in the future)"
        )
    if not hmac.compare_digest(_grpc_mac(secret, client_fp, seconds), match.group(2)):
        raise HandshakeError(
            "bad_proof", "caller does not know this network's isolation key or federation secret"
        )


def grpc_channel(
    credentials: MeshCredentials,
    host: str,
    port: int,
    *,
    network_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Channel:
    """A grpclib `Channel` that presents our certificate, verifies the server's chain and adds the
    isolation proof to every call. ``network_id`` names the server's network when it is a federated
    one (the proof then uses that link's secret); by default our own network."""
    target = network_id or credentials.network_id
    if target == credentials.network_id:
        secret = credentials.trust.isolation_key
    else:
        link = credentials.trust.federation(target)
        if link is None:
            raise MeshnetError(
                f"network {target!r} is neither ours nor federated; cannot open a gRPC channel"
            )
        secret = link.secret
    client_fp = credentials.certificate.fingerprint
    channel = Channel(host, port, ssl=credentials.ssl_context(server_side=False, alpn=("h2",)))

    async def add_proof(event: SendRequest) -> None:
        seconds = int(clock())
        event.metadata[PROOF_METADATA_KEY] = f"{seconds}.{_grpc_mac(secret, client_fp, seconds)}"

    listen(channel, SendRequest, add_proof)
    return channel


def _peer_certificate(peer: Peer) -> bytes | None:
    # grpclib's Peer only exposes the parsed certificate; the DER (needed for the fingerprint the
    # proof binds to) comes from the transport's SSL object. Missing -> None -> refused (fail closed).
    transport = getattr(peer, "_transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


@attrs.define
class GrpcAuthenticator:
    """Checks every incoming gRPC call (certificate checks + isolation proof) before its handler runs.

    Attach it to a grpclib `Server` with `attach`; handlers get the verified caller with `peer`.
    """

    credentials: MeshCredentials
    metrics: MeshnetMetrics = attrs.field(factory=default_metrics)
    max_proof_age: float = 300.0
    clock: Callable[[], float] = time.time

    def server_ssl_context(self) -> Any:
        """The TLS context to pass to ``Server.start(..., ssl=...)``."""
        return self.credentials.ssl_context(server_side=True, alpn=("h2",))

    def attach(self, server: Server) -> None:
        listen(server, RecvRequest, self._on_request)

    def peer(self, stream: Stream[Any, Any]) -> PeerInfo:
        """The verified caller of ``stream`` (raises `GRPCError` UNAUTHENTICATED if it is not)."""
        return self._check(stream.peer).peer

    def _check(self, peer: Peer) -> PeerCheck:
        try:
            return self.credentials.check_peer(_peer_certificate(peer))
        except HandshakeError as exc:
            raise self._refuse(exc.reason, str(exc)) from None

    def _refuse(self, reason: str, message: str) -> GRPCError:
        self.metrics.handshake_refused(reason)
        transport_log.info("handshake_refused", side="grpc-server", reason=reason)
        return GRPCError(Status.UNAUTHENTICATED, message)

    async def _on_request(self, event: RecvRequest) -> None:
        check = self._check(event.peer)
        try:
            verify_grpc_proof(
                event.metadata.get(PROOF_METADATA_KEY),
                check.secret,
                check.certificate.fingerprint,
                now=self.clock(),
                max_age=self.max_proof_age,
            )
        except HandshakeError as exc:
            raise self._refuse(exc.reason, str(exc)) from None


class MeshGrpcServer:
    """A grpclib `Server` for ``handlers``, authenticated with ``credentials``, as an async context.

    ``async with MeshGrpcServer(creds, [MyService()], port=0) as server:`` then ``server.port``;
    handlers call ``server.authenticator.peer(stream)`` for the verified caller.
    """

    def __init__(
        self,
        credentials: MeshCredentials,
        handlers: Collection[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: MeshnetMetrics | None = None,
    ) -> None:
        self.authenticator = GrpcAuthenticator(
            credentials, metrics if metrics is not None else default_metrics()
        )
        self._server = Server(handlers)
        self.authenticator.attach(self._server)
        self._host, self._requested_port = host, port
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise MeshnetError("MeshGrpcServer.port is only known inside 'async with'")
        return self._port

    async def __aenter__(self) -> MeshGrpcServer:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
        except OSError:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        await self._server.start(sock=sock, ssl=self.authenticator.server_ssl_context())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.close()
        await self._server.wait_closed()
