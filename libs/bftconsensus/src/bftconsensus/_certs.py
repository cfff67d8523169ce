"""Pure checks of PBFT certificates: batches, prepared proofs, checkpoint proofs, view changes,
and the deterministic computation of a new view's pre-prepares (so backups can recompute it)."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Sequence

from bftconsensus import _messages as pb
from bftconsensus._crypto import KeyDirectory
from bftconsensus._errors import DecodeError
from bftconsensus._wire import DEFAULT_LIMITS, WireLimits, open_signed, open_unsigned

__all__ = [
    "batch_digest",
    "faults_tolerated",
    "quorum_size",
    "primary_of",
    "parse_request",
    "check_prepared",
    "check_checkpoint_proof",
    "check_view_change",
    "new_view_plan",
]


def faults_tolerated(n: int) -> int:
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """The smallest quorum any two of which share f+1 members (so at least one honest one).

    ceil((n + f + 1) / 2): 2f+1 when n = 3f+1 as in PBFT, and still intersecting for the other
    sizes a membership change can leave (n = 3 needs 2 of 3, not 1; n = 5 needs 4, not 3).
    """
    return (n + faults_tolerated(n)) // 2 + 1


def primary_of(members: Sequence[str], view: int) -> str:
    return members[view % len(members)]


def batch_digest(requests: Sequence[pb.Signed]) -> bytes:
    h = hashlib.sha256(b"bftconsensus.batch\x00")
    for env in requests:
        raw = bytes(env)
        h.update(len(raw).to_bytes(8, "big") + raw)
    return h.digest()


def parse_request(
    env: pb.Signed, replicas: Container[str], limits: WireLimits = DEFAULT_LIMITS
) -> pb.ClientRequest:
    """A request's body, which must name the client that signed it; a client is never a replica.

    The signature is not checked here: a replica authenticates a request once, when it first
    meets it (its client's own link, or the signature), and a batch that reached a certificate was
    authenticated by at least f+1 replicas, so by at least one honest one (see _replica_core).
    """
    req = open_unsigned(env, pb.ClientRequest, limits)
    if req.client != env.signer or env.signer in replicas:
        raise DecodeError(f"request signed by {env.signer!r} names client {req.client!r}")
    return req


def check_prepared(
    keys: KeyDirectory, members: Sequence[str], proof: pb.PreparedProof
) -> tuple[pb.PrePrepare, list[pb.ClientRequest]]:
    """A pre-prepare signed by its view's primary plus 2f matching prepares from other members."""
    pp = open_signed(keys, proof.pre_prepare, pb.PrePrepare)
    if proof.pre_prepare.signer != primary_of(members, pp.view):
        raise DecodeError(f"pre-prepare for view {pp.view} not signed by its primary")
    reqs = [parse_request(env, members) for env in pp.requests]
    if batch_digest(pp.requests) != pp.digest:
        raise DecodeError(f"pre-prepare seq {pp.seq} digest does not match its batch")
    who: set[str] = set()
    for env in proof.prepares:
        p = open_signed(keys, env, pb.Prepare)
        if (p.view, p.seq, p.digest) != (pp.view, pp.seq, pp.digest) or p.replica != env.signer:
            raise DecodeError(f"prepare from {env.signer!r} does not match pre-prepare seq {pp.seq}")
        if env.signer in members and env.signer != proof.pre_prepare.signer:
            who.add(env.signer)
    if len(who) < quorum_size(len(members)) - 1:
        raise DecodeError(f"prepared proof for seq {pp.seq} has {len(who)} distinct prepares")
    return pp, reqs


def check_checkpoint_proof(
    keys: KeyDirectory, members: Sequence[str], seq: int, proof: Sequence[pb.Signed]
) -> bytes:
    """A quorum of members signed the same state digest at ``seq``; returns it (b"" at seq 0)."""
    if seq == 0:
        return b""
    digests: dict[bytes, set[str]] = {}
    for env in proof:
        c = open_signed(keys, env, pb.Checkpoint)
        if c.seq != seq or c.replica != env.signer or env.signer not in members:
            raise DecodeError(f"checkpoint from {env.signer!r} is not for seq {seq}")
        digests.setdefault(c.state_digest, set()).add(env.signer)
    need = quorum_size(len(members))
    for digest, who in digests.items():
        if len(who) >= need:
            return digest
    raise DecodeError(f"checkpoint proof for seq {seq} lacks {need} matching signatures")


def check_view_change(
    keys: KeyDirectory, members: Sequence[str], env: pb.Signed, window: int
) -> tuple[pb.ViewChange, list[tuple[pb.PrePrepare, pb.Signed]]]:
    vc = open_signed(keys, env, pb.ViewChange)
    if vc.replica != env.signer or env.signer not in members:
        raise DecodeError(f"view change signed by {env.signer!r} names {vc.replica!r}")
    check_checkpoint_proof(keys, members, vc.stable_seq, vc.checkpoint_proof)
    certs = []
    for proof in vc.prepared:
        pp, _ = check_prepared(keys, members, proof)
        if not vc.stable_seq < pp.seq <= vc.stable_seq + window or pp.view >= vc.new_view:
            raise DecodeError(f"view change carries an out-of-range prepared seq {pp.seq}")
        certs.append((pp, proof.pre_prepare))
    return vc, certs


def new_view_plan(
    checked: Sequence[tuple[pb.ViewChange, list[tuple[pb.PrePrepare, pb.Signed]]]],
) -> tuple[int, int, list[tuple[int, bytes, list[pb.Signed]]]]:
    """(min_s, max_s, [(seq, digest, requests)]) the new primary must re-propose.

    For each seq above the highest stable checkpoint, the batch prepared in the highest view wins;
    gaps are filled with empty (null) batches, exactly as in PBFT.
    """
    min_s = max(vc.stable_seq for vc, _ in checked)
    best: dict[int, pb.PrePrepare] = {}
    for _, certs in checked:
        for pp, _env in certs:
            if pp.seq > min_s and (pp.seq not in best or pp.view > best[pp.seq].view):
                best[pp.seq] = pp
    max_s = max(best, default=min_s)
    plan: list[tuple[int, bytes, list[pb.Signed]]] = []
    for seq in range(min_s + 1, max_s + 1):
        chosen = best.get(seq)
        if chosen is None:
            plan.append((seq, batch_digest([]), []))
        else:
            plan.append((seq, chosen.digest, list(chosen.requests)))
    return min_s, max_s, plan
