"""The anyio driver of the handshake: TLS 1.3 first, then the isolation proof (see `_handshake`)."""

from __future__ import annotations

import contextlib
import hashlib
import ssl

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream

from meshnet._certs import NodeCertificate
from meshnet._codec import FRAME_HEADER_BYTES, encode_frame, frame_length
from meshnet._credentials import MeshCredentials, PeerCheck
from meshnet._errors import DecodeError, HandshakeError, PeerUnreachableError
from meshnet._handshake import MAX_HANDSHAKE_FRAME, NonceCache
from meshnet._handshake_state import ClientHandshake, ServerHandshake
from meshnet._observe import MeshnetMetrics, default_metrics, transport_log
from meshnet._peer import PeerInfo
from meshnet._pipe import take_over
from meshnet._stream import FramedStream

__all__ = ["connect", "server_handshake"]

# OpenSSL X509_V_ERR_* codes that mean "not valid now" and "not issued by anyone we trust".
_EXPIRED_CODES = frozenset({9, 10})  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21})  # unknown issuer, self-signed, chain incomplete


def _tls_refusal(exc: ssl.SSLError, side: str) -> HandshakeError:
    """Name an OpenSSL failure with one of the refusal reasons."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _EXPIRED_CODES:
            return HandshakeError("expired", f"peer certificate is not valid now ({exc.verify_message})")
        if code in _UNTRUSTED_CODES:
            return HandshakeError(
                "wrong_network",
                f"peer certificate is not issued by our network or a federated one ({exc.verify_message})",
            )
        return HandshakeError("bad_certificate", f"peer certificate rejected: {exc.verify_message}")
    text = f"{exc.reason or ''} {exc}".upper()
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text or "CERTIFICATE_REQUIRED" in text:
        return HandshakeError("bad_certificate", "peer presented no certificate")
    if "UNKNOWN_CA" in text:
        return HandshakeError("wrong_network", "peer does not trust our network's CA")
    if "CERTIFICATE_EXPIRED" in text:
        return HandshakeError("expired", "peer says our certificate has expired")
    if "ALERT" in text:
        return HandshakeError("refused_by_peer", f"peer aborted TLS: {exc.reason}")
    return HandshakeError("tls_error", f"TLS failed on the {side} side: {exc.reason or exc}")


class _HandshakeIO:
    """Reads and writes handshake frames (bounded to MAX_HANDSHAKE_FRAME) and keeps any bytes that
    arrived after the last handshake frame for the FramedStream."""

    def __init__(self, tls: TLSStream, closed_reason: str) -> None:
        self.tls = tls
        self.buffer = bytearray()
        self._closed_reason = closed_reason

    async def write(self, payload: bytes) -> None:
        try:
            await self.tls.send(encode_frame(payload, MAX_HANDSHAKE_FRAME))
        except ssl.SSLError as exc:
            raise _tls_refusal(exc, "sending") from None
        except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            raise HandshakeError(
                self._closed_reason, "peer closed the connection during the handshake"
            ) from None

    async def read(self) -> bytes:
        try:
            length = frame_length(await self._exactly(FRAME_HEADER_BYTES), MAX_HANDSHAKE_FRAME)
            return await self._exactly(length)
        except DecodeError as exc:
            raise HandshakeError("malformed", f"bad handshake frame: {exc}") from None

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            try:
                self.buffer += await self.tls.receive()
            except ssl.SSLError as exc:
                raise _tls_refusal(exc, "receiving") from None
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                raise HandshakeError(
                    self._closed_reason,
                    "peer closed the connection during the handshake (if it is the server, it probably "
                    "refused our certificate: wrong network, expired or revoked; see its refusal metrics)",
                ) from None
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out


async def _wrap(tcp: ByteStream, creds: MeshCredentials, *, server_side: bool) -> TLSStream:
    side = "server" if server_side else "client"
    try:
        return await TLSStream.wrap(
            tcp,
            server_side=server_side,
            ssl_context=creds.ssl_context(server_side=server_side),
            standard_compatible=False,
        )
    except ssl.SSLError as exc:
        raise _tls_refusal(exc, side) from None
    except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        reason = "closed" if server_side else "refused_by_peer"
        raise HandshakeError(reason, "connection closed during the TLS handshake") from None


def _framed(
    tls: TLSStream,
    peer: PeerInfo,
    creds: MeshCredentials,
    metrics: MeshnetMetrics,
    initial: bytes,
    certificate: NodeCertificate,
) -> FramedStream:
    """The authenticated stream, its data path moved to a `TlsPipe` where the backend allows."""
    pipe = take_over(tls, creds.max_frame_size, initial)
    return FramedStream(
        tls,
        peer,
        max_frame_size=creds.max_frame_size,
        metrics=metrics,
        initial=b"" if pipe is not None else initial,
        certificate=certificate,
        pipe=pipe,
    )


async def _close_quietly(stream: ByteStream) -> None:
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(1.0),
        contextlib.suppress(anyio.BrokenResourceError, ssl.SSLError, OSError),
    ):
        await stream.aclose()


async def server_handshake(
    tcp: ByteStream, creds: MeshCredentials, nonces: NonceCache, metrics: MeshnetMetrics
) -> FramedStream:
    """Authenticate an accepted TCP connection; raises `HandshakeError` (connection closed) if refused."""
    tls: TLSStream | None = None
    try:
        tls = await _wrap(tcp, creds, server_side=True)
        io = _HandshakeIO(tls, "closed")
        peer_der = tls.extra(TLSAttribute.peer_certificate_binary)  # noqa: S610 (anyio typed attributes, not Django)
        check: PeerCheck | None = None
        problem: HandshakeError | None = None
        try:
            check = creds.check_peer(peer_der)
        except HandshakeError as exc:
            problem = exc
        machine = ServerHandshake(
            check=check,
            problem=problem,
            client_fp=hashlib.sha256(peer_der or b"").digest(),
            server_fp=creds.certificate.fingerprint,
            network_id=creds.network_id,
            nonces=nonces,
        )
        await io.write(machine.receive_hello(await io.read()))
        verdict, outcome = machine.receive_proof(await io.read())
        await io.write(verdict)
        if isinstance(outcome, HandshakeError):
            raise outcome
        metrics.handshake_accepted("server")
        assert check is not None  # an accepted outcome implies a verified certificate
        return _framed(tls, outcome, creds, metrics, bytes(io.buffer), check.certificate)
    except BaseException:
        await _close_quietly(tls if tls is not None else tcp)
        raise


async def _client_handshake(
    tcp: ByteStream, creds: MeshCredentials, expected_node_id: str | None, metrics: MeshnetMetrics
) -> FramedStream:
    tls: TLSStream | None = None
    try:
        tls = await _wrap(tcp, creds, server_side=False)
        io = _HandshakeIO(tls, "refused_by_peer")
        server_der = tls.extra(TLSAttribute.peer_certificate_binary)  # noqa: S610 (anyio typed attributes, not Django)
        check = creds.check_peer(server_der)
        if expected_node_id is not None and check.peer.node_id != expected_node_id:
            raise HandshakeError(
                "unexpected_node", f"server is node {check.peer.node_id}, expected {expected_node_id}"
            )
        machine = ClientHandshake(
            check=check,
            client_fp=creds.certificate.fingerprint,
            server_fp=hashlib.sha256(server_der or b"").digest(),
        )
        await io.write(machine.hello())
        await io.write(machine.receive_hello(await io.read()))
        peer = machine.receive_verdict(await io.read())
        metrics.handshake_accepted("client")
        return _framed(tls, peer, creds, metrics, bytes(io.buffer), check.certificate)
    except BaseException:
        await _close_quietly(tls if tls is not None else tcp)
        raise


async def connect(
    credentials: MeshCredentials,
    host: str,
    port: int,
    *,
    expected_node_id: str | None = None,
    metrics: MeshnetMetrics | None = None,
) -> FramedStream:
    """Open a mutually authenticated connection to a meshnet server.

    Raises `PeerUnreachableError` when no TCP connection can be made, `HandshakeError` (with a
    ``reason``) when either side refuses; the whole handshake is bounded by
    ``credentials.handshake_timeout``.
    """
    metrics = metrics if metrics is not None else default_metrics()
    try:
        with anyio.fail_after(credentials.handshake_timeout):
            try:
                tcp = await anyio.connect_tcp(host, port)
            except OSError as exc:
                raise PeerUnreachableError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
            return await _client_handshake(tcp, credentials, expected_node_id, metrics)
    except TimeoutError:
        metrics.handshake_refused("timeout")
        raise HandshakeError(
            "timeout", f"handshake with {host}:{port} took longer than {credentials.handshake_timeout} s"
        ) from None
    except HandshakeError as exc:
        metrics.handshake_refused(exc.reason)
        transport_log.info("handshake_refused", side="client", reason=exc.reason, peer=f"{host}:{port}")
        raise
