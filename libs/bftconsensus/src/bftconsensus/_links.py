"""Which authenticated peers may carry which clients' requests (signed CLIENT_LINK grants).

A replica takes a request without checking its signature when the link it arrived on belongs to
the client, or to a peer the client has granted that role: one process (say a ``ClusterClient``
with many client cores) then pays one signature check per client and replica, not one per
request. A grant names the peer, so it is useless on anyone else's link; it does not expire (the
client trusted that process with its requests, and the process could have signed them anyway).
A grant may also carry the key of the client's MAC authenticators for the replica it is sent to
(see :mod:`bftconsensus._macs`); the latest one per client is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from bftconsensus import _messages as pb
from bftconsensus._crypto import KeyDirectory
from bftconsensus._errors import DecodeError
from bftconsensus._macs import KEY_BYTES
from bftconsensus._wire import DEFAULT_LIMITS, WireLimits, _remember, open_signed

__all__ = ["ClientLinks"]


class ClientLinks:
    """A bounded table of (peer, client) grants, the least recently granted dropped first."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._grants: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._mac_keys: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._grants)

    def grant(
        self,
        src: str,
        env: pb.Signed,
        keys: KeyDirectory,
        is_client: Callable[[str], bool],
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        """Record ``env`` (a signed CLIENT_LINK) that arrived from the authenticated peer ``src``.

        Raises DecodeError for a bad signature, a grant naming another peer or client, a
        signer that is not a client, or a MAC key of the wrong size.
        """
        link = open_signed(keys, env, pb.ClientLink, limits)
        if link.client != env.signer or link.peer != src or not is_client(link.client):
            raise DecodeError(f"client link from {env.signer!r} names {link.client!r} via {link.peer!r}")
        if link.mac_key and len(link.mac_key) != KEY_BYTES:
            raise DecodeError(
                f"MAC key from {env.signer!r} must be {KEY_BYTES} bytes, got {len(link.mac_key)}"
            )
        _remember(self._grants, (src, link.client), None, self.capacity)
        if link.mac_key:
            _remember(self._mac_keys, link.client, bytes(link.mac_key), self.capacity)

    def mac_key(self, client: str) -> bytes | None:
        """The key of ``client``'s MAC tags for this replica, if the client gave one."""
        return self._mac_keys.get(client)

    def speaks_for(self, src: str, client: str) -> bool:
        """Whether a request signed by ``client`` arriving from ``src`` comes from that client."""
        return src == client or (src, client) in self._grants
