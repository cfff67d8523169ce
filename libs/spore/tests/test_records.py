"""Spore records: signing, canonical encoding, and the bounded record decoder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spore
from spore._pb.spore import v1 as pb

_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def test_a_built_record_verifies_under_its_own_key(make_record: Callable[..., spore.SporeRecord]) -> None:
    r = make_record("a")
    assert r.node_id == spore.default_node_id(r.public_key)
    assert spore.verify_ed25519(r.public_key, r.signature, r.canonical_bytes())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("network_id", "net-b"),
        ("role", spore.Role.HYPHA),
        ("addresses", ("10.0.0.1:1",)),
        ("services", ("other",)),
        ("incarnation", 99),
        ("expires_at_ms", 1),
        ("capabilities", spore.Capabilities(cpu_millicores=1)),
    ],
)
def test_changing_any_signed_field_breaks_the_signature(
    make_record: Callable[..., spore.SporeRecord], field: str, value: object
) -> None:
    r = make_record("a")
    tampered = attrs.evolve(r, **{field: value})
    assert tampered.canonical_bytes() != r.canonical_bytes()
    assert not spore.verify_ed25519(r.public_key, r.signature, tampered.canonical_bytes())


def test_a_sclerotium_record_needs_the_network_countersignature() -> None:
    with pytest.raises(spore.ConfigError, match="network_signer"):
        spore.build_record(
            spore.Ed25519Signer.from_seed(b"s"),
            network_id="n",
            role=spore.Role.SCLEROTIUM,
            incarnation=1,
            expires_at=10,
        )


@settings(max_examples=60, deadline=None)
@given(
    addresses=st.lists(_names, max_size=16),
    services=st.lists(_names, max_size=20),
    incarnation=st.integers(0, 2**64 - 1),
    cpu=st.integers(0, 2**32 - 1),
    mem=st.integers(0, 2**64 - 1),
)
def test_record_round_trips_through_the_wire(
    addresses: list[str], services: list[str], incarnation: int, cpu: int, mem: int
) -> None:
    r = spore.build_record(
        spore.Ed25519Signer.from_seed(b"rt"),
        network_id="net",
        role=spore.Role.HYPHA,
        addresses=addresses,
        services=services,
        capabilities=spore.Capabilities(cpu_millicores=cpu, memory_bytes=mem),
        incarnation=incarnation,
        expires_at=12345.678,
    )
    limits = spore.RecordLimits(max_record_bytes=16384)
    assert spore.decode_record(spore.encode_record(r), limits) == r


def _pb_record(make_record: Callable[..., spore.SporeRecord], **overrides: object) -> bytes:
    m = pb.SporeRecord().parse(spore.encode_record(make_record("a")))
    for k, v in overrides.items():
        setattr(m, k, v)
    return bytes(m)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"addresses": [f"h{i}:1" for i in range(17)]}, "oversized"),
        ({"services": [f"s{i}" for i in range(65)]}, "oversized"),
        ({"node_id": "x" * 300}, "oversized"),
        ({"public_key": b"short"}, "malformed"),
        ({"signature": b"\x00" * 10}, "malformed"),
        ({"role": 0}, "malformed"),
    ],
)
def test_the_decoder_enforces_its_bounds(
    make_record: Callable[..., spore.SporeRecord], overrides: dict[str, object], reason: str
) -> None:
    with pytest.raises(spore.DecodeError) as info:
        spore.decode_record(_pb_record(make_record, **overrides))
    assert info.value.reason == reason


def test_an_oversized_record_is_refused_before_parsing() -> None:
    with pytest.raises(spore.DecodeError, match="at most 4096") as info:
        spore.decode_record(b"\x0a" + b"\xff" * 5000)
    assert info.value.reason == "oversized"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_record_decoder_raises_only_decode_error_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(spore.DecodeError):
        spore.decode_record(data)


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_record_decoder_survives_any_single_bit_flip(pos: int, bit: int) -> None:
    good = bytearray(spore.encode_record(spore.build_record(
        spore.Ed25519Signer.from_seed(b"flip"), network_id="n", role=spore.Role.HYPHA,
        addresses=["127.0.0.1:1"], incarnation=3, expires_at=100,
    )))  # fmt: skip
    good[pos % len(good)] ^= 1 << bit
    with contextlib.suppress(spore.DecodeError):
        spore.decode_record(bytes(good))
