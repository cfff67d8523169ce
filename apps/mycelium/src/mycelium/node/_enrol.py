"""A node's credentials on disk: key (0600), certificate and network trust, written at enrolment."""

from __future__ import annotations

import time
from pathlib import Path

import spore
from meshnet import MeshCredentials, NetworkIdentity, NetworkTrust, NodeCertificate, NodeIdentity
from mycelium._errors import MyceliumError

KEY, CERT, TRUST = "node.key", "node.crt", "trust.json"
#: A Sclerotium's spore record, countersigned by the network key at enrolment (the node itself
#: never holds that key), which the node publishes in the Primary Spore.
SCLEROTIUM_RECORD = "sclerotium.spore"
SCLEROTIUM_RECORD_VALIDITY = 30 * 86400.0


class EnrolmentError(MyceliumError):
    """The node's credential files are missing or do not belong together."""


def enrol(network: NetworkIdentity, data_dir: Path, role: str = "", mesh_address: str = "") -> NodeIdentity:
    """Create a node key in ``data_dir`` and a certificate for it signed by ``network``; a
    Sclerotium also gets its countersigned spore record."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    identity = NodeIdentity.generate()
    identity.save(data_dir / KEY)
    (data_dir / CERT).write_bytes(network.issue(identity.public_key).pem)
    network.trust().save(data_dir / TRUST)
    if role.endswith("sclerotium"):
        now = time.time()
        record = spore.build_record(
            identity,
            network_id=network.network_id,
            role=spore.Role.SCLEROTIUM,
            addresses=(mesh_address,) if mesh_address else (),
            incarnation=int(now * 1000),
            expires_at=now + SCLEROTIUM_RECORD_VALIDITY,
            network_signer=network,
            node_id=identity.node_id,
        )
        (data_dir / SCLEROTIUM_RECORD).write_bytes(spore.encode_record(record))
    return identity


def load_credentials(data_dir: Path) -> MeshCredentials:
    missing = [name for name in (KEY, CERT, TRUST) if not (data_dir / name).exists()]
    if missing:
        raise EnrolmentError(
            f"{data_dir} has no {', '.join(missing)}: enrol the node first (mycelium up does it for local networks)"
        )
    try:
        return MeshCredentials(
            NodeIdentity.load(data_dir / KEY),
            NodeCertificate.from_pem((data_dir / CERT).read_bytes()),
            NetworkTrust.load(data_dir / TRUST),
        )
    except Exception as exc:  # meshnet's typed errors carry the reason; wrap for the CLI
        raise EnrolmentError(f"cannot load the credentials in {data_dir}: {exc}") from None
