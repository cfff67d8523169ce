"""Tampered input reaching a running gossip node: forged signature, wrong network, replayed old
incarnation, oversized record, malformed bytes. Every one is rejected (100%), counted by reason,
nothing of it reaches the view, and the node keeps answering."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest

import spore
from spore._pb.spore import v1 as pb

ROUNDS = 50


def _alive(sender: str, record: spore.SporeRecord) -> bytes:
    u = spore.Update(spore.MemberState.ALIVE, record.node_id, record.incarnation, record, sender)
    return spore.encode_envelope(spore.Envelope("net-a", sender, None, (u,)))


def _oversized_record_datagram(sender: str, record: spore.SporeRecord) -> bytes:
    m = pb.SporeRecord().parse(spore.encode_record(record))
    m.addresses = [f"10.0.{i}.1:7000" for i in range(40)]
    upd = pb.Update(state=pb.MemberState.ALIVE, record=bytes(m))
    return bytes(pb.Envelope(network_id="net-a", sender=sender, updates=[upd]))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("forged", "bad_signature"),
        ("foreign", "wrong_network"),
        ("replayed", "stale_incarnation"),
        ("oversized", "oversized"),
        ("malformed", "malformed"),
    ],
)
def test_every_tampered_message_is_rejected_counted_and_the_node_keeps_running(
    trust: spore.NetworkTrust,
    clock: Callable[[], float],
    make_record: Callable[..., spore.SporeRecord],
    name: str,
    reason: str,
) -> None:
    node = spore.LatentSpore(
        spore.Ed25519Signer.from_seed(b"target"), trust, clock=clock, rng=random.Random(3), incarnation=1
    )
    attacker = make_record("attacker")
    node.handle(spore.Received(attacker.node_id, _alive(attacker.node_id, attacker)))  # honest hello
    current = make_record("victim", incarnation=9)
    node.handle(spore.Received("relay", _alive("relay", current)))
    view_before = {n: (m.state, m.record) for n, m in node.members.items()}
    rng = random.Random(7)
    src = attacker.node_id
    for i in range(ROUNDS):
        if name == "forged":
            bad = attrs.evolve(make_record(f"new-{i}"), addresses=(f"6.6.6.{i}:1",))
            data = _alive(src, bad)
        elif name == "foreign":
            data = _alive(src, make_record(f"new-{i}", network_id="net-b"))
        elif name == "replayed":
            src = current.node_id  # the victim's own older record, replayed as if from the victim
            data = _alive(src, make_record("victim", incarnation=i % 9))
        elif name == "oversized":
            data = _oversized_record_datagram(src, make_record(f"new-{i}"))
        else:
            data = rng.randbytes(rng.randrange(1, 200)) + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        node.handle(spore.Received(src, data))
    # The first offence is validated and counted by reason; it quarantines the sender, whose later
    # updates are discarded unexamined (counted as quarantined). Undecodable bytes are always
    # counted by reason, since nothing in them can be trusted to skip.
    assert node.stats.rejected[reason] >= 1
    assert node.stats.rejected[reason] + node.stats.updates_quarantined == ROUNDS
    assert {n: (m.state, m.record) for n, m in node.members.items()} == view_before
    assert node.validator.is_quarantined(src)
    # Still running: it answers a ping from an honest member.
    ping = spore.encode_envelope(spore.Envelope("net-a", "relay", spore.Ping(11, node.node_id)))
    replies = [spore.decode_envelope(a.data).body for a in node.handle(spore.Received("relay", ping))
               if isinstance(a, spore.Send)]  # fmt: skip
    assert spore.Ack(11) in replies
