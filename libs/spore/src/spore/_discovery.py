"""The client (Hypha) discovery chain, sans-I/O: cached spore -> Rhizomorph -> Seed -> Latent.

`DiscoveryChain` decides which tier to ask next and validates and merges what each tier returns;
the caller does the asking (`discover` is a small async runner over caller-given fetchers). It
stops as soon as it knows `want` Sclerotia, so a warm cache costs no network at all. The result
is the list of discovered Sclerotia to hand to meshnet's multi-homed client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import attrs

from spore._errors import RecordRejectedError, SporeError
from spore._record import Role, SporeRecord
from spore._validation import RecordValidator

__all__ = ["DISCOVERY_ORDER", "DiscoveryChain", "DiscoveryStep", "discover"]

DISCOVERY_ORDER = ("cache", "rhizomorph", "seed", "latent")


@attrs.frozen
class DiscoveryStep:
    source: str
    offered: int
    accepted: int
    error: str = ""


class DiscoveryChain:
    def __init__(
        self, validator: RecordValidator, *, want: int = 3, order: tuple[str, ...] = DISCOVERY_ORDER
    ) -> None:
        if want < 1:
            raise SporeError(f"want must be >= 1 Sclerotium, got {want}")
        unknown = set(order) - set(DISCOVERY_ORDER)
        if unknown:
            raise SporeError(f"unknown discovery tiers {sorted(unknown)}; valid: {DISCOVERY_ORDER}")
        self.validator = validator
        self.want = want
        self._pending = list(order)
        self._found: dict[str, SporeRecord] = {}
        self.trail: list[DiscoveryStep] = []

    @property
    def done(self) -> bool:
        return len(self._found) >= self.want or not self._pending

    def next_source(self) -> str | None:
        """The next tier to ask, or None when enough Sclerotia are known or every tier was tried."""
        if self.done:
            return None
        return self._pending.pop(0)

    def offer(self, source: str, records: Iterable[SporeRecord]) -> int:
        """Validate and merge what `source` returned; returns how many Sclerotia were accepted."""
        offered = accepted = 0
        for r in records:
            offered += 1
            if r.role is not Role.SCLEROTIUM:
                continue
            try:
                self.validator.check(r, sender=source)
            except RecordRejectedError:
                continue
            known = self._found.get(r.node_id)
            if known is None or r.supersedes(known):
                self._found[r.node_id] = r
                self.validator.accept(r)
                accepted += 1
        self.trail.append(DiscoveryStep(source, offered, accepted))
        return accepted

    def failed(self, source: str, error: str) -> None:
        self.trail.append(DiscoveryStep(source, 0, 0, error))

    def sclerotia(self) -> list[SporeRecord]:
        """Discovered Sclerotia, newest records, in a stable order (by node id)."""
        return [self._found[k] for k in sorted(self._found)]


async def discover(
    chain: DiscoveryChain,
    fetchers: Mapping[str, Callable[[], Awaitable[Iterable[SporeRecord]]]],
) -> list[SporeRecord]:
    """Walk the chain with the given fetchers (a missing tier is skipped); any exception from a
    fetcher is recorded in `chain.trail` and the next tier is tried."""
    while (source := chain.next_source()) is not None:
        fetch = fetchers.get(source)
        if fetch is None:
            chain.failed(source, "no fetcher configured")
            continue
        try:
            records = await fetch()
        except Exception as exc:  # a tier being down is the normal case the chain exists for
            chain.failed(source, f"{type(exc).__name__}: {exc}")
            continue
        chain.offer(source, records)
    return chain.sclerotia()
