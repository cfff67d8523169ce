"""Who is on the other end of a connection, as verified by the handshake."""

from __future__ import annotations

import attrs

__all__ = ["PeerInfo"]


@attrs.frozen
class PeerInfo:
    """A verified peer: its node id and key (from its certificate), its network, what it may do.

    ``permissions`` is ``{"*"}`` for a peer of one's own network and the federation link's set for a
    peer of a federated network; services authorise with `allows`.
    """

    node_id: str
    network_id: str
    permissions: frozenset[str]
    public_key: bytes = attrs.field(repr=False)
    federated: bool = False

    def allows(self, permission: str) -> bool:
        """True when this peer holds ``permission`` (or the wildcard ``*``)."""
        return "*" in self.permissions or permission in self.permissions
