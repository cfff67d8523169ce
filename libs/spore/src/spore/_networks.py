"""Several networks in one node: one separate view per network, crossed only by federation.

A node in two networks runs two `LatentSpore` cores (and two Primary views); nothing learnt in
one is ever merged into the other. A lookup in another network's view is allowed only through an
explicit federation link configured by the operator.
"""

from __future__ import annotations

from spore._errors import UnknownNetworkError
from spore._gossip import LatentSpore
from spore._messages import MemberState
from spore._record import SporeRecord

__all__ = ["NetworkViews"]


class NetworkViews:
    def __init__(self) -> None:
        self._views: dict[str, LatentSpore] = {}
        self._federation: set[tuple[str, str]] = set()

    def add(self, core: LatentSpore) -> None:
        nid = core.trust.network_id
        if nid in self._views:
            raise ValueError(f"network {nid!r} already has a view in this node")
        self._views[nid] = core

    def view(self, network_id: str) -> LatentSpore:
        try:
            return self._views[network_id]
        except KeyError:
            raise UnknownNetworkError(
                f"this node is not in network {network_id!r}; it is in {sorted(self._views)}"
            ) from None

    def federate(self, local: str, remote: str) -> None:
        """Allow members of `local` to discover through this node's view of `remote`."""
        self.view(local)
        self.view(remote)
        self._federation.add((local, remote))

    def lookup(self, network_id: str, *, on_behalf_of: str) -> list[SporeRecord]:
        """Alive members of `network_id`, for a requester in network `on_behalf_of`."""
        if on_behalf_of != network_id and (on_behalf_of, network_id) not in self._federation:
            raise UnknownNetworkError(
                f"no federation link lets network {on_behalf_of!r} discover in {network_id!r}"
            )
        core = self.view(network_id)
        return [m.record for m in core.members.values() if m.state is MemberState.ALIVE]
