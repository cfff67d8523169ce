"""Node and network identities: derived ids, signatures, key files that refuse loose permissions."""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
from pathlib import Path

import pytest

import meshnet


def test_node_id_is_derived_from_the_public_key_and_stable() -> None:
    ident = meshnet.NodeIdentity.generate()
    assert len(ident.public_key) == 32
    assert ident.node_id == meshnet.node_id_for(ident.public_key)
    assert len(ident.node_id) == 26
    assert ident.node_id.isalnum()
    assert ident.node_id.islower()
    rebuilt = meshnet.NodeIdentity.from_private_bytes(ident.private_key_object().private_bytes_raw())
    assert rebuilt.node_id == ident.node_id
    assert meshnet.NodeIdentity.generate().node_id != ident.node_id


def test_node_id_changes_with_any_bit_of_the_key() -> None:
    key = bytes(range(32))
    flipped = bytes([key[0] ^ 1]) + key[1:]
    assert meshnet.node_id_for(key) != meshnet.node_id_for(flipped)
    assert meshnet.node_id_for(key) == base64.b32encode(hashlib.sha256(key).digest()).decode().lower()[:26]


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33])
def test_node_id_for_refuses_keys_of_the_wrong_length(bad: bytes) -> None:
    with pytest.raises(meshnet.IdentityError, match="32 raw Ed25519 bytes"):
        meshnet.node_id_for(bad)


def test_signatures_verify_only_for_the_signer_and_the_data() -> None:
    a, b = meshnet.NodeIdentity.generate(), meshnet.NodeIdentity.generate()
    sig = a.sign(b"spore record")
    assert len(sig) == 64
    assert meshnet.verify_signature(a.public_key, sig, b"spore record")
    assert not meshnet.verify_signature(b.public_key, sig, b"spore record")
    assert not meshnet.verify_signature(a.public_key, sig, b"spore recorD")
    assert not meshnet.verify_signature(a.public_key, sig[:-1] + bytes([sig[-1] ^ 1]), b"spore record")


@pytest.mark.parametrize(
    ("key", "sig"), [(b"", b"x" * 64), (b"k" * 32, b""), (b"k" * 32, b"s" * 64), (b"\xff" * 32, b"s" * 64)]
)
def test_verify_signature_says_false_on_malformed_input_instead_of_raising(key: bytes, sig: bytes) -> None:
    assert meshnet.verify_signature(key, sig, b"data") is False


def test_network_identity_signs_and_derives_its_id(net_a: meshnet.NetworkIdentity) -> None:
    assert net_a.network_id == meshnet.node_id_for(net_a.public_key)
    assert meshnet.verify_signature(net_a.public_key, net_a.sign(b"x"), b"x")
    assert len(net_a.isolation_key) == 32
    twin = meshnet.NetworkIdentity.generate("alpha")
    assert twin.network_id != net_a.network_id
    assert twin.isolation_key != net_a.isolation_key


@pytest.mark.parametrize("name", ["", "has space", "-lead", "x" * 65, "ünï"])
def test_network_names_are_validated(name: str) -> None:
    with pytest.raises(meshnet.IdentityError, match="network name"):
        meshnet.NetworkIdentity.generate(name)


def test_secrets_never_appear_in_repr(net_a: meshnet.NetworkIdentity) -> None:
    ident = meshnet.NodeIdentity.generate()
    creds = net_a.credentials_for(ident)
    raw = ident.private_key_object().private_bytes_raw()
    texts = [repr(ident), repr(net_a), repr(creds), repr(creds.trust), str(creds.trust)]
    for text in texts:
        assert raw.hex() not in text
        assert net_a.isolation_key.hex() not in text
        assert repr(raw) not in text
        assert repr(net_a.isolation_key) not in text
    assert ident.node_id in repr(ident)


def test_identities_refuse_to_be_pickled(net_a: meshnet.NetworkIdentity) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(meshnet.NodeIdentity.generate())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(net_a)


def test_node_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    ident = meshnet.NodeIdentity.generate()
    path = tmp_path / "node.key"
    ident.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert meshnet.NodeIdentity.load(path) == ident


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_key_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    meshnet.NodeIdentity.generate().save(path)
    os.chmod(path, mode)
    with pytest.raises(meshnet.KeyFileError, match=r"chmod 600"):
        meshnet.NodeIdentity.load(path)


def test_network_file_round_trips_and_refuses_loose_permissions(
    tmp_path: Path, net_a: meshnet.NetworkIdentity
) -> None:
    path = tmp_path / "network.json"
    net_a.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = meshnet.NetworkIdentity.load(path)
    assert loaded.network_id == net_a.network_id
    assert loaded.isolation_key == net_a.isolation_key
    assert loaded.ca_certificate == net_a.ca_certificate
    os.chmod(path, 0o644)
    with pytest.raises(meshnet.KeyFileError, match="0644"):
        meshnet.NetworkIdentity.load(path)


def test_trust_file_round_trips_with_revocations_and_federations(
    tmp_path: Path, net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    link = net_b.federation_link({"blocks.read"}, meshnet.FederationLink.new_secret())
    revoked = net_a.revoke(node_ids={"abc"}, serials={7}, sequence=3)
    trust = net_a.trust(revocations=revoked, federations=[link])
    path = tmp_path / "trust.json"
    trust.save(path)
    loaded = meshnet.NetworkTrust.load(path)
    assert loaded.network_id == net_a.network_id
    assert loaded.isolation_key == net_a.isolation_key
    assert loaded.revocations is not None
    assert loaded.revocations.sequence == 3
    assert loaded.federation(net_b.network_id) == link


@pytest.mark.parametrize(
    "content",
    [b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b"\x00" * 100],
)
def test_malformed_key_files_raise_key_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(meshnet.KeyFileError):
        meshnet.NodeIdentity.load(path)
    with pytest.raises(meshnet.KeyFileError):
        meshnet.NetworkIdentity.load(path)


def test_missing_key_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(meshnet.KeyFileError, match="does not exist"):
        meshnet.NodeIdentity.load(tmp_path / "absent.key")
