"""Deterministic chunk placement: rendezvous (highest-random-weight) hashing over node ids.

Every node computes the same replica set for a chunk from the node list alone, with no lookup
table (the property Ceph's CRUSH gives RBD). Replicas spread over distinct failure domains
first; only when there are fewer domains than replicas do two replicas share a domain. Adding or
removing a node moves only the chunks whose top-scoring nodes changed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import attrs

from ._errors import ConfigError

__all__ = ["StorageNodeInfo", "place_chunk"]


@attrs.frozen
class StorageNodeInfo:
    """A storage node as placement sees it."""

    node_id: str = attrs.field(validator=attrs.validators.min_len(1))
    failure_domain: str = ""
    weight: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))


def _score(volume: str, chunk: int, node: StorageNodeInfo) -> float:
    digest = hashlib.blake2b(f"{volume}\x00{chunk}\x00{node.node_id}".encode(), digest_size=8).digest()
    # Map to (0, 1]; weighted rendezvous: -w / ln(u) keeps proportions when weights differ.
    u = (int.from_bytes(digest, "big") + 1) / 2.0**64
    return -node.weight / math.log(u) if u < 1.0 else float("inf")


def place_chunk(volume: str, chunk: int, nodes: Sequence[StorageNodeInfo], replicas: int) -> tuple[str, ...]:
    """The ``replicas`` node ids holding ``chunk`` of ``volume``, best first."""
    if replicas > len(nodes):
        raise ConfigError(f"replicas={replicas}: only {len(nodes)} storage nodes are known")
    ranked = sorted(nodes, key=lambda n: (_score(volume, chunk, n), n.node_id), reverse=True)
    chosen: list[str] = []
    domains: set[str] = set()
    for node in ranked:  # first pass: one replica per failure domain
        domain = node.failure_domain or node.node_id
        if domain not in domains:
            chosen.append(node.node_id)
            domains.add(domain)
            if len(chosen) == replicas:
                return tuple(chosen)
    for node in ranked:  # fewer domains than replicas: fill from the remaining best scores
        if node.node_id not in chosen:
            chosen.append(node.node_id)
            if len(chosen) == replicas:
                break
    return tuple(chosen)
