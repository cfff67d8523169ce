"""How replicas authenticate client requests: the client's own link, its MAC tag, else its signature.

Clients send a request to the primary, and to every replica when they retransmit, over mutually
authenticated links. A backup vouches for a request in the primary's batch when it holds the
client's own copy, or when the request's MAC tag for it holds (the client gave it the key in a
link grant), and otherwise checks the signature. The primary takes the client's own copy as
unchecked as a backup does; a client one of whose requests failed its signature check is a
suspect, and its requests are checked from then on.
"""

from __future__ import annotations

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._certs import batch_digest
from bftconsensus._wire import Kind, decode_frame, seal

MEMBERS = ("e0", "e1", "e2", "e3")


def _request(signer: b.Ed25519Signer, ts: int, op: bytes, *, forge: bool = False) -> pb.Signed:
    env = seal(signer, Kind.CLIENT_REQUEST, pb.ClientRequest(signer.node_id, ts, op))
    if forge:  # same body and signer, signature that does not verify
        return pb.Signed(env.kind, env.body, env.signer, bytes(64))
    return env


def _kinds(actions: list[b.Action]) -> list[int]:
    return [decode_frame(a.frame).kind for a in actions if isinstance(a, b.Send)]


def _pre_prepare(primary: b.Ed25519Signer, requests: list[pb.Signed]) -> bytes:
    pp = pb.PrePrepare(view=0, seq=1, digest=batch_digest(requests), requests=requests)
    return bytes(seal(primary, Kind.PRE_PREPARE, pp))


def test_a_client_sends_to_the_primary_and_to_every_replica_when_it_retransmits(world, keys) -> None:
    client = b.Client(world["client"], keys, MEMBERS)
    first = [a for a in client.submit(b"put k v") if isinstance(a, b.Send)]
    assert [a.dst for a in first] == ["e0"]  # the primary of view 0
    again = [a for a in client.timer("retransmit") if isinstance(a, b.Send)]
    assert sorted(a.dst for a in again) == sorted(MEMBERS)
    assert {a.frame for a in again} == {first[0].frame}
    env = decode_frame(first[0].frame)
    assert len(env.macs) == 16 * len(MEMBERS)  # one tag per replica


def test_a_backup_vouches_for_a_request_it_received_from_the_client_itself(world, keys) -> None:
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    req = _request(world["client"], 1, b"put k v", forge=True)
    backup.receive("client", bytes(req))
    assert backup.pending["client"][0] == 1
    out = backup.receive("e0", _pre_prepare(world["e0"], [req]))
    assert _kinds(out).count(int(Kind.PREPARE)) == len(MEMBERS) - 1  # to every other replica


def test_a_backup_without_the_clients_copy_checks_the_signature(world, keys) -> None:
    config = b.ReplicaConfig(MEMBERS)
    forged = _request(world["client"], 1, b"put k v", forge=True)
    backup = b.Replica(world["e1"], keys, config, b.KeyValueStore())
    assert backup.receive("e0", _pre_prepare(world["e0"], [forged])) == []
    assert 1 not in backup.log  # refused before any slot state was kept

    # ...so the same replica still takes the primary's genuine batch for that slot (had it kept
    # the refused pre-prepare, this one would conflict with it and be refused too)
    genuine = _request(world["client"], 1, b"put k v")
    out = backup.receive("e0", _pre_prepare(world["e0"], [genuine]))
    assert _kinds(out).count(int(Kind.PREPARE)) == len(MEMBERS) - 1
    assert 1 in backup.log  # where an accepted pre-prepare's slot state is kept
    _env, kept = backup.log[1].pre_prepares[0]
    assert kept.digest == batch_digest([genuine])  # the genuine batch, nothing of the refused one


def test_a_copy_relayed_by_another_node_is_not_the_clients_own(world, keys) -> None:
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    forged = _request(world["client"], 1, b"put k v", forge=True)
    backup.receive("e0", bytes(forged))  # e0 claims to pass on the client's request
    assert backup.pending == {}
    assert backup.receive("e0", _pre_prepare(world["e0"], [forged])) == []


def _proposed(actions: list[b.Action]) -> list[str] | None:
    """The signers of the requests in the pre-prepare among ``actions``, None if there is none."""
    for a in actions:
        if isinstance(a, b.Send) and decode_frame(a.frame).kind == int(Kind.PRE_PREPARE):
            return [r.signer for r in pb.PrePrepare().parse(decode_frame(a.frame).body).requests]
    return None


def test_the_primary_takes_a_request_from_its_clients_own_link_unchecked(world, keys) -> None:
    """Like a backup, the primary takes the client's own copy as the client's: no Ed25519 check
    on the path of every request (backups vouch for it by their MAC tags or copies)."""
    primary = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    out = primary.receive("client", bytes(_request(world["client"], 1, b"put a 1", forge=True)))
    assert _proposed(out) == ["client"]
    assert primary.suspects == set()


def test_with_check_all_requests_the_primary_proposes_only_requests_whose_signature_holds(
    world, keys
) -> None:
    config = b.ReplicaConfig(MEMBERS, check_all_requests=True)
    primary = b.Replica(world["e0"], keys, config, b.KeyValueStore())
    out = primary.receive("client", bytes(_request(world["client"], 1, b"put a 1", forge=True)))
    assert _proposed(out) is None
    assert "client" not in primary.pending

    out = primary.receive("client2", bytes(_request(world["client2"], 1, b"put b 2")))
    assert _proposed(out) == ["client2"]


def test_a_client_a_backup_cannot_vouch_for_becomes_a_suspect_and_is_checked(world, keys) -> None:
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    forged = _request(world["client"], 1, b"put k v", forge=True)
    assert backup.receive("e0", _pre_prepare(world["e0"], [forged])) == []  # no copy, no tag
    assert backup.suspects == {"client"}
    # from then on its requests are checked even on its own link: a forged one is not held (nor
    # waited on, which would end in a view change the next primary could not avoid)...
    assert backup.receive("client", bytes(_request(world["client"], 2, b"put k w", forge=True))) == []
    assert backup.pending == {}
    # ...a genuine one is, and other clients' requests are still taken as they come
    backup.receive("client", bytes(_request(world["client"], 3, b"put k x")))
    backup.receive("client2", bytes(_request(world["client2"], 1, b"put q r", forge=True)))
    assert sorted(backup.pending) == ["client", "client2"]


def test_a_primary_proposes_a_suspects_request_only_with_a_valid_signature(world, keys) -> None:
    primary = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    # a copy passed on by a backup must be signed; a forged one makes its client a suspect
    assert primary.receive("e1", bytes(_request(world["client"], 1, b"put a 1", forge=True))) == []
    assert primary.suspects == {"client"}
    out = primary.receive("client", bytes(_request(world["client"], 2, b"put a 2", forge=True)))
    assert _proposed(out) is None
    assert "client" not in primary.pending
    out = primary.receive("client", bytes(_request(world["client"], 3, b"put a 3")))
    assert _proposed(out) == ["client"]


def test_suspects_are_only_clients_in_the_key_directory(world, keys) -> None:
    primary = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    stranger = b.Ed25519Signer.from_seed(b"stranger", "stranger")  # not in ``keys``
    primary.receive("e1", bytes(_request(stranger, 1, b"put a 1", forge=True)))
    primary.receive("e1", bytes(_request(world["e1"], 1, b"put a 1", forge=True)))  # a replica
    assert primary.suspects == set()


def test_a_backup_passes_a_request_it_gets_directly_on_to_the_primary(world, keys) -> None:
    """A client that still believes in an earlier primary, or retransmits, reaches backups; they
    relay the request (the primary checks its signature, as for any copy not from the client)."""
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    frame = bytes(_request(world["client"], 1, b"put k v"))
    relayed = [a for a in backup.receive("client", frame) if isinstance(a, b.Send)]
    assert [a.dst for a in relayed] == ["e0"]
    primary = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    out = primary.receive("e1", relayed[0].frame)
    assert int(Kind.PRE_PREPARE) in _kinds(out)
    forged = bytes(_request(world["client"], 2, b"put k w", forge=True))
    assert primary.receive("e1", forged) == []  # a relayed copy must be signed by its client


def test_a_backup_waits_on_requests_sent_to_it_not_on_those_met_in_a_batch(world, keys) -> None:
    """Clients send to backups only when they retransmit, as in PBFT: a backup that gets a request
    directly starts its view-change timer; one that met it only in the primary's batch does not."""
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    other = _request(world["client2"], 1, b"put j w")
    out = backup.receive("e0", _pre_prepare(world["e0"], [other]))
    assert not any(isinstance(a, b.SetTimer) for a in out)
    frame = bytes(_request(world["client"], 1, b"put k v"))
    assert any(isinstance(a, b.SetTimer) for a in backup.receive("client", frame))
    assert backup.timer("view-change") != []  # overdue and not executed: suspect the primary


def test_the_boundary_checkpoint_needs_the_new_memberships_quorum(world, keys) -> None:
    """A replica that has not executed the boundary batch must not discard it on the old quorum.

    Found by the simulator (add a replica, seed 36 at the time): with the old quorum of 3 a
    lagging replica made the boundary checkpoint stable, dropped the batch, and waited for a
    snapshot the new membership could not vouch for without that replica's own checkpoint.
    """
    r = b.Replica(world["e3"], keys, b.ReplicaConfig(MEMBERS, checkpoint_interval=4), b.KeyValueStore())
    r.next_members = (*MEMBERS, "e4")
    r.reconfig_at = 4
    digest = b"s" * 32
    for signer in ("e0", "e1", "e2"):
        r.receive(signer, bytes(seal(world[signer], Kind.CHECKPOINT, pb.Checkpoint(4, digest, signer))))
    assert r.stable_seq == 0  # 3 of the new 5 are not a quorum (4)

    r.next_members = ()
    r.reconfig_at = 0
    r.checkpoints.clear()
    for signer in ("e0", "e1", "e2"):
        r.receive(signer, bytes(seal(world[signer], Kind.CHECKPOINT, pb.Checkpoint(4, digest, signer))))
    assert r.stable_seq == 4  # the same three are a quorum of the unchanged membership


def _link(client: b.Ed25519Signer, peer: str, *, forge: bool = False, key: bytes = b"") -> bytes:
    env = seal(client, Kind.CLIENT_LINK, pb.ClientLink(client.node_id, peer, key))
    if forge:
        env = pb.Signed(env.kind, env.body, env.signer, bytes(64))
    return bytes(env)


def test_a_client_link_grant_lets_one_process_carry_a_clients_requests(world, keys) -> None:
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    forged = _request(world["client"], 1, b"put k v", forge=True)
    backup.receive("proc", bytes(forged))  # no grant yet: the signature is checked, and fails
    assert backup.pending == {}
    assert backup.suspects == {"client"}  # (which would have it checked on any link from now on)

    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    client = b.Client(world["client"], keys, MEMBERS)
    assert backup.receive("proc", client.link_frame("proc")) == []
    backup.receive("proc", bytes(forged))
    assert backup.pending["client"][0] == 1  # taken from the granted link, signature unchecked
    out = backup.receive("e0", _pre_prepare(world["e0"], [forged]))
    assert _kinds(out).count(int(Kind.PREPARE)) == len(MEMBERS) - 1


def test_client_link_grants_are_checked(world, keys) -> None:
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    backup.receive("proc", _link(world["client"], "other-proc"))  # names another peer
    backup.receive("proc", _link(world["client"], "proc", forge=True))  # bad signature
    backup.receive("proc", _link(world["e2"], "proc"))  # a replica is never a client
    backup.receive("proc", _link(world["client"], "proc", key=b"short"))  # a MAC key is 32 bytes
    assert len(backup.links) == 0
    assert backup.links.mac_key("client") is None
    assert not backup.links.speaks_for("proc", "client")
    forged = _request(world["client"], 1, b"put k v", forge=True)
    backup.receive("proc", bytes(forged))
    assert backup.pending == {}


def test_client_link_grants_are_bounded(world, keys) -> None:
    from bftconsensus._links import ClientLinks

    links = ClientLinks(capacity=3)
    for i in range(10):
        links.grant(f"p{i}", decode_frame(_link(world["client"], f"p{i}")), keys, lambda c: True)
    assert len(links) == 3
    assert links.speaks_for("p9", "client")
    assert not links.speaks_for("p0", "client")  # the oldest grants went first


def _with_macs(client: b.Client, ts_op: bytes, *, forge_signature: bool = False) -> pb.Signed:
    (send, *_rest) = client.submit(ts_op)
    assert isinstance(send, b.Send)
    env = decode_frame(send.frame)
    if forge_signature:  # the tags cover kind, signer and body, not the signature
        env = pb.Signed(env.kind, env.body, env.signer, bytes(64), env.macs)
    return env


def test_a_backup_vouches_on_its_mac_tag_without_checking_the_signature(world, keys) -> None:
    client = b.Client(world["client"], keys, MEMBERS)
    backup = b.Replica(world["e1"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    assert backup.receive("client", client.link_frame("client", "e1")) == []
    assert backup.links.mac_key("client") is not None
    req = _with_macs(client, b"put k v", forge_signature=True)  # only the tag can vouch for it
    out = backup.receive("e0", _pre_prepare(world["e0"], [req]))
    assert _kinds(out).count(int(Kind.PREPARE)) == len(MEMBERS) - 1


def test_a_bad_or_foreign_tag_falls_back_to_the_signature(world, keys) -> None:
    client = b.Client(world["client"], keys, MEMBERS)
    config = b.ReplicaConfig(MEMBERS)

    def backup_with_key(name: str, key_for: str) -> b.Replica:
        r = b.Replica(world[name], keys, config, b.KeyValueStore())
        r.receive("client", client.link_frame("client", key_for))
        return r

    forged = _with_macs(client, b"put k v", forge_signature=True)
    # e2 was given e1's key: its own tag does not match under it, and the signature is bad
    assert backup_with_key("e2", "e1").receive("e0", _pre_prepare(world["e0"], [forged])) == []
    # a primary that swaps the body keeps neither the tag nor the signature valid
    swapped = pb.Signed(
        forged.kind,
        bytes(pb.ClientRequest("client", forged_ts(forged), b"put k evil")),
        forged.signer,
        forged.signature,
        forged.macs,
    )
    assert backup_with_key("e1", "e1").receive("e0", _pre_prepare(world["e0"], [swapped])) == []
    # a bad tag on a well-signed request costs a signature check, not the request
    client2 = b.Client(world["client"], keys, MEMBERS, first_timestamp=5)
    genuine = _with_macs(client2, b"put k v")
    genuine = pb.Signed(
        genuine.kind, genuine.body, genuine.signer, genuine.signature, bytes(len(genuine.macs))
    )
    out = backup_with_key("e1", "e1").receive("e0", _pre_prepare(world["e0"], [genuine]))
    assert _kinds(out).count(int(Kind.PREPARE)) == len(MEMBERS) - 1


def forged_ts(env: pb.Signed) -> int:
    return pb.ClientRequest().parse(env.body).timestamp


def test_mac_keys_are_bounded_with_the_grants(world, keys) -> None:
    from bftconsensus._links import ClientLinks

    links = ClientLinks(capacity=2)
    for name in ("client", "client2", "client"):
        client = b.Client(world[name], keys, MEMBERS)
        links.grant(name, decode_frame(client.link_frame(name, "e1")), keys, lambda c: True)
    assert links.mac_key("client") is not None  # granted again: the most recent
    assert links.mac_key("client2") is not None
    client3 = b.Client(world["coord"], keys, MEMBERS)
    links.grant("coord", decode_frame(client3.link_frame("coord", "e1")), keys, lambda c: True)
    assert links.mac_key("client2") is None  # the least recently granted went first
