"""Record validation: signature, network, incarnation, expiry, and the confirmation quarantine.

A record that fails any check is discarded and counted by reason. The node that SENT it is put in
quarantine ("needs connection confirmation"): none of its data is merged again until the caller
confirms a direct, authenticated exchange with it (`confirm`). One deliberate exception, because
gossip is delayed and reordered: a stale incarnation relayed by a third party is normal lag and
only counted; a node sending its OWN record with an incarnation below one it already signed is a
replay and quarantines it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

import attrs

from spore._errors import RecordRejectedError
from spore._identity import default_node_id, verify_ed25519
from spore._record import Role, SporeRecord

__all__ = ["MembershipOracle", "NetworkTrust", "RecordValidator", "REJECT_REASONS"]

REJECT_REASONS = (
    "bad_signature",
    "bad_network_signature",
    "node_id_mismatch",
    "wrong_network",
    "stale_incarnation",
    "expired",
    "not_in_primary",
    "malformed",
    "oversized",
)


class MembershipOracle(Protocol):
    """The Primary Spore's say on a record: True admit, False refuse, None "cannot tell now"
    (Primary unreachable, so validated Latent data is the fallback)."""

    def admits(self, record: SporeRecord) -> bool | None: ...


@attrs.frozen
class NetworkTrust:
    """What a node trusts for one network: its id and the network's public key."""

    network_id: str = attrs.field(validator=attrs.validators.min_len(1))
    network_public_key: bytes = attrs.field(default=b"")
    node_id_for: Callable[[bytes], str] = default_node_id

    @network_public_key.validator
    def _check_key(self, _attr: object, value: bytes) -> None:
        if value and len(value) != 32:
            raise ValueError(f"network_public_key must be 32 raw Ed25519 bytes or empty, got {len(value)}")


class RecordValidator:
    """Checks records for ONE network and remembers the highest incarnation seen per node."""

    def __init__(
        self,
        trust: NetworkTrust,
        clock: Callable[[], float],
        oracle: MembershipOracle | None = None,
    ) -> None:
        self.trust = trust
        self._clock = clock
        self.oracle = oracle
        self.rejected: Counter[str] = Counter()
        self.quarantined: dict[str, float] = {}
        self._highest: dict[str, int] = {}

    def check(self, record: SporeRecord, sender: str | None = None) -> None:
        """Raise `RecordRejectedError` (counted; sender quarantined) unless `record` is acceptable.

        Accepting does not advance the incarnation high-water mark; `accept` does, so a caller
        may check and then decide not to merge.
        """
        try:
            self._check(record, sender)
        except RecordRejectedError as exc:
            self.rejected[exc.reason] += 1
            relayed_lag = exc.reason == "stale_incarnation" and sender != record.node_id
            if sender is not None and not relayed_lag and exc.reason != "not_in_primary":
                self.quarantined.setdefault(sender, self._clock())
            raise

    def accept(self, record: SporeRecord) -> None:
        """Advance the high-water mark for `record.node_id` (call after merging)."""
        if record.incarnation > self._highest.get(record.node_id, -1):
            self._highest[record.node_id] = record.incarnation

    def highest(self, node_id: str) -> int | None:
        return self._highest.get(node_id)

    def count_stale(self, record: SporeRecord, sender: str) -> None:
        """An incarnation older than the one merged: counted; a replay if the node sent it itself."""
        self.rejected["stale_incarnation"] += 1
        if sender == record.node_id:
            self.quarantined.setdefault(sender, self._clock())

    def count_undecodable(self, reason: str, sender: str | None) -> None:
        """Bytes from `sender` did not decode: count it and quarantine the sender."""
        self.rejected[reason] += 1
        if sender is not None:
            self.quarantined.setdefault(sender, self._clock())

    def is_quarantined(self, sender: str) -> bool:
        return sender in self.quarantined

    def confirm(self, sender: str) -> bool:
        """A direct authenticated exchange with `sender` succeeded: merge its data again."""
        return self.quarantined.pop(sender, None) is not None

    def _check(self, r: SporeRecord, sender: str | None) -> None:
        if r.network_id != self.trust.network_id:
            raise RecordRejectedError(
                "wrong_network", f"record of {r.node_id!r} is for network {r.network_id!r}, not ours"
            )
        if r.node_id != self.trust.node_id_for(r.public_key):
            raise RecordRejectedError(
                "node_id_mismatch", f"node_id {r.node_id!r} is not derived from its public key"
            )
        body = r.canonical_bytes()
        if not verify_ed25519(r.public_key, r.signature, body):
            raise RecordRejectedError("bad_signature", f"signature of {r.node_id!r} does not verify")
        if r.role is Role.SCLEROTIUM and not (
            self.trust.network_public_key
            and verify_ed25519(self.trust.network_public_key, r.network_signature, body)
        ):
            raise RecordRejectedError(
                "bad_network_signature", f"Sclerotium {r.node_id!r} lacks a valid network countersignature"
            )
        if r.expires_at <= self._clock():
            raise RecordRejectedError("expired", f"record of {r.node_id!r} expired at {r.expires_at:.3f}")
        high = self._highest.get(r.node_id)
        if high is not None and r.incarnation < high:
            raise RecordRejectedError(
                "stale_incarnation", f"record of {r.node_id!r} has incarnation {r.incarnation} < {high}"
            )
        if self.oracle is not None and self.oracle.admits(r) is False:
            raise RecordRejectedError("not_in_primary", f"the Primary Spore does not admit {r.node_id!r}")
