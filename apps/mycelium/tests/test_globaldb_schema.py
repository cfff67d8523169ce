"""The typed Global DB schema: records, keys per network, compare-and-swap writes, liveness."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelium.globaldb import (
    AclEntry,
    ConflictError,
    HealthScore,
    KVStore,
    NetworkConfig,
    NetworkDB,
    NotFoundError,
    SchemaError,
    SclerotiumRecord,
    SeedSporeEntry,
    ServiceDefinition,
    Session,
    TrustScore,
    decode_record,
    encode_record,
)

Backend = tuple[KVStore, Any]
RECORD_TYPES = [
    SclerotiumRecord,
    TrustScore,
    HealthScore,
    ServiceDefinition,
    AclEntry,
    SeedSporeEntry,
    NetworkConfig,
]


def network() -> str:
    return f"net-{uuid.uuid4().hex[:10]}"


def sclerotium(node: str = "node-a") -> SclerotiumRecord:
    return SclerotiumRecord(
        node, b"\x01" * 32, b"-----BEGIN CERTIFICATE-----\n...", "dedicated", ("10.0.0.1:7000",)
    )


@pytest.mark.anyio
async def test_records_round_trip_under_the_network_prefix(kv_backend: Backend) -> None:
    store, _ = kv_backend
    net = network()
    db = NetworkDB(store, net)
    await db.config.put(NetworkConfig(net, "demo"))
    await db.sclerotia.create(sclerotium())
    await db.trust.put(TrustScore("node-a", 0.9, 1.0))
    await db.health.put(HealthScore("node-a", 0.75, 2.0, "ok"))
    await db.services.put(ServiceDefinition("web", "endophyte", "nginx:1", 2, (80, 443)))
    await db.acls.put(AclEntry("node-a", "services/web", ("read", "write")))
    await db.master_seed.put(SeedSporeEntry("master", "master", b"spore", b"sig" * 21))
    await db.service_seeds.put(SeedSporeEntry("web", "service", b"s", b"g"))
    got = await db.sclerotia.require("node-a")
    assert got.value == sclerotium()
    assert (await db.services.require("web")).value.ports == (80, 443)
    assert [v.value.node_id for v in await db.trust.list()] == ["node-a"]
    assert (await db.master_seed.require()).value.payload == b"spore"
    raw = await store.get(f"/mycelium/{net}/sclerotia/node-a")
    assert raw is not None
    assert b'"node_id":"node-a"' in raw.value
    everything = await store.range(f"/mycelium/{net}/", prefix=True, count_only=True)
    assert everything.count == 8


@pytest.mark.anyio
async def test_concurrent_update_from_a_stale_read_raises_conflict(kv_backend: Backend) -> None:
    store, _ = kv_backend
    db = NetworkDB(store, network())
    rev = await db.trust.put(TrustScore("node-b", 0.5))
    await db.trust.put(TrustScore("node-b", 0.6), expected_revision=rev)  # another writer got there first
    with pytest.raises(ConflictError) as info:
        await db.trust.put(TrustScore("node-b", 0.1), expected_revision=rev)
    assert info.value.expected_revision == rev
    assert info.value.actual_revision > rev
    assert "read it again" in str(info.value)
    assert (await db.trust.require("node-b")).value.score == 0.6


@pytest.mark.anyio
async def test_create_refuses_to_overwrite_an_existing_record(kv_backend: Backend) -> None:
    store, _ = kv_backend
    db = NetworkDB(store, network())
    await db.sclerotia.create(sclerotium())
    with pytest.raises(ConflictError, match="expected it absent"):
        await db.sclerotia.create(sclerotium())


@pytest.mark.anyio
async def test_parallel_updates_all_land_through_cas_retries(kv_backend: Backend) -> None:
    store, _ = kv_backend
    db = NetworkDB(store, network())
    await db.services.put(ServiceDefinition("svc", replicas=0))

    def bump(current: ServiceDefinition | None) -> ServiceDefinition:
        assert current is not None
        return ServiceDefinition(current.name, current.kind, current.image, current.replicas + 1)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(lambda: db.services.update("svc", bump, attempts=20))
    assert (await db.services.require("svc")).value.replicas == 5


@pytest.mark.anyio
async def test_missing_and_conditional_delete(kv_backend: Backend) -> None:
    store, _ = kv_backend
    db = NetworkDB(store, network())
    with pytest.raises(NotFoundError, match="no AclEntry named 'ghost'"):
        await db.acls.require("ghost")
    rev = await db.acls.put(AclEntry("x", "r", ("read",)))
    with pytest.raises(ConflictError):
        await db.acls.delete("x", expected_revision=rev + 100)
    assert await db.acls.delete("x", expected_revision=rev)
    assert await db.acls.get("x") is None


@pytest.mark.anyio
async def test_liveness_entries_follow_the_session_lease(kv_backend: Backend) -> None:
    store, _ = kv_backend
    db = NetworkDB(store, network())
    async with Session(store, ttl=10) as session:
        await db.announce_alive(session, "node-a")
        assert await db.alive() == ["node-a"]
    assert await db.alive() == []  # closing the session revokes the lease


@pytest.mark.anyio
async def test_networks_do_not_see_each_other(kv_backend: Backend) -> None:
    store, _ = kv_backend
    a, b = NetworkDB(store, network()), NetworkDB(store, network())
    await a.sclerotia.put(sclerotium("only-in-a"))
    assert await b.sclerotia.list() == []


def test_names_that_could_escape_their_key_are_refused() -> None:
    with pytest.raises(SchemaError, match="node_id"):
        SclerotiumRecord("../config", b"", b"")
    with pytest.raises(SchemaError, match="network_id"):
        NetworkDB(object(), "a/b")  # type: ignore[arg-type]


def test_invalid_field_values_name_the_field() -> None:
    with pytest.raises(SchemaError, match=r"score must be between 0\.0 and 1\.0"):
        TrustScore("n", 1.5)
    with pytest.raises(SchemaError, match="permissions"):
        AclEntry("n", "r", ("fly",))


def test_decoder_rejects_wrong_types_with_the_field_name() -> None:
    with pytest.raises(SchemaError, match=r"TrustScore\.score: expected a number"):
        decode_record(TrustScore, b'{"node_id":"n","score":"high"}')
    with pytest.raises(SchemaError, match="missing"):
        decode_record(TrustScore, b'{"node_id":"n"}')
    with pytest.raises(SchemaError, match="over the"):
        decode_record(TrustScore, b" " * (2 * 1024 * 1024))


@given(data=st.binary(max_size=512), cls=st.sampled_from(RECORD_TYPES))
def test_decoding_arbitrary_bytes_yields_a_record_or_schema_error(data: bytes, cls: Any) -> None:
    try:
        record = decode_record(cls, data)
    except SchemaError:
        return
    assert isinstance(record, cls)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=10)


@given(
    obj=st.dictionaries(
        st.sampled_from(["node_id", "score", "public_key", "ports", "name", "x"]), json_values
    )
)
def test_decoding_arbitrary_json_objects_yields_a_record_or_schema_error(obj: dict[str, Any]) -> None:
    import json

    for cls in RECORD_TYPES:
        try:
            record = decode_record(cls, json.dumps(obj).encode())
        except SchemaError:
            continue
        assert decode_record(cls, encode_record(record)) == record
