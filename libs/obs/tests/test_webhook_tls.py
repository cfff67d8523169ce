"""The webhook over HTTPS: a real TLS server with a self-signed certificate made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener
from prometheus_client import CollectorRegistry

import obs

pytestmark = pytest.mark.anyio


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip(
        "cryptography.x509", reason="cryptography is needed to make a test certificate"
    )
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "obs-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
async def https_server(certificate: tuple[Path, Path]) -> AsyncIterator[tuple[int, list[bytes]]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    received: list[bytes] = []

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
                received.append(data)
                await stream.send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass  # the client refused our certificate

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(tcp.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 (anyio, not Django)
    listener = TLSListener(tcp, context, standard_compatible=False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port, received
        tg.cancel_scope.cancel()


@pytest.fixture
def event() -> obs.AlertEvent:
    reg = CollectorRegistry()
    obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds").set(3)
    (ev,) = obs.AlertEvaluator(reg, [obs.AlertRule("Lagging", "mycelium_dram_lag_seconds", ">", 1)]).evaluate(
        1.0
    )
    return ev


async def test_webhook_posts_over_https_to_a_trusted_server(
    https_server: tuple[int, list[bytes]], certificate: tuple[Path, Path], event: obs.AlertEvent
) -> None:
    port, received = https_server
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    await obs.WebhookNotifier(f"https://127.0.0.1:{port}/hook", ssl_context=trust).notify(event)
    assert received[0].startswith(b"POST /hook HTTP/1.1\r\n")


async def test_webhook_refuses_an_untrusted_certificate(
    https_server: tuple[int, list[bytes]], event: obs.AlertEvent
) -> None:
    port, received = https_server
    with pytest.raises(obs.NotifierError, match="cannot connect"):
        await obs.WebhookNotifier(f"https://127.0.0.1:{port}/hook", timeout=5).notify(event)
    assert received == []
