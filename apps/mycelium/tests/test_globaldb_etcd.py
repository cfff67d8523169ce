"""etcd-only behaviour: interoperability with etcdctl, TLS client certificates, config errors."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mycelium.globaldb import (
    EtcdClient,
    EtcdConfig,
    EventType,
    GlobalDBError,
    InvalidRequestError,
    NetworkConfig,
    NetworkDB,
    TlsConfig,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_etcdctl_reads_what_our_client_writes(etcd_single: Any, key_prefix: str) -> None:
    async with EtcdClient.connect(*etcd_single.endpoints) as client:
        await client.put(key_prefix + "ours", "hello from python")
        await NetworkDB(client, "interop").config.put(NetworkConfig("interop", "Interop net"))
    out = etcd_single.etcdctl("get", key_prefix + "ours", "--print-value-only").stdout
    assert out.strip() == "hello from python"
    cfg = etcd_single.etcdctl("get", "/mycelium/interop/config", "--print-value-only").stdout
    assert json.loads(cfg)["display_name"] == "Interop net"


async def test_our_client_reads_and_watches_what_etcdctl_writes(etcd_single: Any, key_prefix: str) -> None:
    async with EtcdClient.connect(*etcd_single.endpoints) as client:
        async with client.watch(key_prefix, prefix=True) as watch:
            await anyio.to_thread.run_sync(etcd_single.etcdctl, "put", key_prefix + "theirs", "from etcdctl")
            with anyio.fail_after(10):
                event = await watch.__anext__()
        assert event.type is EventType.PUT
        assert event.kv.value == b"from etcdctl"
        kv = await client.get(key_prefix + "theirs")
        assert kv is not None
        assert kv.value == b"from etcdctl"


async def test_lease_granted_by_etcdctl_is_visible_with_its_keys(etcd_single: Any, key_prefix: str) -> None:
    granted = etcd_single.etcdctl("lease", "grant", "60", "-w", "json").stdout
    lease_id = json.loads(granted)["ID"]
    etcd_single.etcdctl("put", key_prefix + "leased", "v", "--lease", f"{lease_id:x}")
    async with EtcdClient.connect(*etcd_single.endpoints) as client:
        info = await client.lease_time_to_live(lease_id, keys=True)
        assert info.keys == (f"{key_prefix}leased".encode(),)
        await client.lease_revoke(lease_id)
    assert etcd_single.etcdctl("get", key_prefix + "leased").stdout == ""


async def test_snapshot_is_a_valid_etcd_backup(etcd_single: Any, key_prefix: str, tmp_path: Path) -> None:
    async with EtcdClient.connect(*etcd_single.endpoints) as client:
        rev = (await client.put(key_prefix + "backup", "x")).revision
        await client.snapshot(tmp_path / "snap.db")
    status = json.loads(
        etcd_single.etcdctl("snapshot", "status", str(tmp_path / "snap.db"), "-w", "json").stdout
    )
    assert status["revision"] >= rev
    assert status["totalKey"] >= 1


async def test_cluster_status_and_members(etcd_cluster3: Any) -> None:
    async with EtcdClient.connect(*etcd_cluster3.endpoints) as client:
        status = await client.status()
        members = await client.members()
    assert status.leader != 0
    assert status.version.startswith("3.")
    assert sorted(m.name for m in members) == ["m0", "m1", "m2"]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="endpoints"):
        EtcdConfig(endpoints=[])
    with pytest.raises(InvalidRequestError, match="invalid port"):
        EtcdConfig(endpoints=["127.0.0.1:99999"])
    with pytest.raises(InvalidRequestError, match="request_timeout must be > 0"):
        EtcdConfig(endpoints=["127.0.0.1:2379"], request_timeout=0)
    with pytest.raises(InvalidRequestError, match="https; give a TlsConfig"):
        EtcdConfig(endpoints=["https://127.0.0.1:2379"])
    with pytest.raises(InvalidRequestError, match="no such file"):
        TlsConfig(ca_file=tmp_path / "missing.pem")


# -- TLS ----------------------------------------------------------------------------------------
def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *, ca: bool = False, server: bool = False,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_crt, _ = _write(tmp_path / "ca", ca, ca_key)
    server_crt, server_pem = _write(
        tmp_path / "server", _cert("etcd", server_key, (ca, ca_key), server=True), server_key
    )
    client_crt, client_pem = _write(
        tmp_path / "client", _cert("mycelium", client_key, (ca, ca_key)), client_key
    )
    return {"ca": ca_crt, "server_crt": server_crt, "server_key": server_pem, "client_crt": client_crt,
            "client_key": client_pem}  # fmt: skip


async def test_tls_with_client_certificates(etcd_factory: Any, pki: dict[str, Path], key_prefix: str) -> None:
    flags = ["--cert-file", str(pki["server_crt"]), "--key-file", str(pki["server_key"]),
             "--client-cert-auth", "--trusted-ca-file", str(pki["ca"])]  # fmt: skip
    health_ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    health_ctx.load_cert_chain(str(pki["client_crt"]), str(pki["client_key"]))
    cluster = etcd_factory(1, flags, health_ctx)
    tls = TlsConfig(ca_file=pki["ca"], cert_file=pki["client_crt"], key_file=pki["client_key"])
    async with EtcdClient.connect(*cluster.endpoints, tls=tls) as client:
        await client.put(key_prefix + "secure", "yes")
        kv = await client.get(key_prefix + "secure")
        assert kv is not None
        assert kv.value == b"yes"
    no_client_cert = EtcdClient.connect(
        *cluster.endpoints, tls=TlsConfig(ca_file=pki["ca"]), request_timeout=1.0
    )
    with pytest.raises(GlobalDBError) as info:
        await no_client_cert.get(key_prefix + "secure")
    await no_client_cert.aclose()
    assert cluster.endpoints[0].removeprefix("https://") in str(info.value)
