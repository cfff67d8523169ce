"""Property: a volume behaves like one flat byte array, whatever mix of I/O hits it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import blockstore

SIZE = 64 * 1024
OPS = st.lists(
    st.tuples(
        st.sampled_from(["write", "trim", "zero", "read"]),
        st.integers(0, SIZE - 1),
        st.integers(1, 20_000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(OPS, st.sampled_from([1, 3]))
def test_volume_matches_a_byte_array_model(ops: list[tuple[str, int, int, int]], replicas: int) -> None:
    async def scenario() -> None:
        spec = blockstore.VolumeSpec(name="model", size=SIZE, chunk_size=16 * 1024, replicas=replicas)
        model = bytearray(SIZE)
        with tempfile.TemporaryDirectory() as tmp:
            reps = {
                f"n{i}": blockstore.LocalReplica(f"n{i}", Path(tmp) / f"n{i}", SIZE, 4096, spec.chunk_size)
                for i in range(replicas)
            }
            async with blockstore.Volume(spec, reps) as vol:
                for op, offset, length, byte in ops:
                    length = min(length, SIZE - offset)
                    if op == "write":
                        await vol.write(offset, bytes([byte]) * length, fua=byte % 2 == 0)
                        model[offset : offset + length] = bytes([byte]) * length
                    elif op in ("trim", "zero"):
                        await (vol.trim if op == "trim" else vol.write_zeroes)(offset, length)
                        model[offset : offset + length] = bytes(length)
                    else:
                        assert await vol.read(offset, length) == bytes(model[offset : offset + length])
                assert await vol.read(0, SIZE) == bytes(model)
                for r in reps.values():  # every replica holds the same blocks and records
                    assert r.store.read(0, SIZE // 4096) == next(iter(reps.values())).store.read(
                        0, SIZE // 4096
                    )
            for r in reps.values():
                await r.aclose()

    anyio.run(scenario)
