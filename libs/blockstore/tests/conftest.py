"""Fixtures: volumes on temp dirs, NBD servers run in a background event loop for real clients."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

import blockstore


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian packages qemu-utils, libnbd-bin, fio, nbdkit)")
    return path


@pytest.fixture
def need_binary() -> Callable[[str], str]:
    return need


@contextlib.asynccontextmanager
async def local_volume(
    root: Path,
    spec: blockstore.VolumeSpec,
    nodes: int = 1,
    keyring: blockstore.Keyring | None = None,
    metrics: blockstore.VolumeMetrics | None = None,
) -> AsyncIterator[tuple[blockstore.Volume, dict[str, blockstore.LocalReplica]]]:
    replicas = {
        f"n{i}": blockstore.LocalReplica(f"n{i}", root / f"n{i}", spec.size, spec.block_size, spec.chunk_size)
        for i in range(nodes)
    }
    try:
        async with blockstore.Volume(
            spec, replicas, keyring=keyring, op_timeout=2.0, probe_interval=0.05, metrics=metrics
        ) as vol:
            yield vol, replicas
    finally:
        for r in replicas.values():
            await r.aclose()


@pytest.fixture
def make_local_volume() -> Callable[
    ..., contextlib.AbstractAsyncContextManager[tuple[blockstore.Volume, dict[str, blockstore.LocalReplica]]]
]:
    return local_volume


@pytest.fixture
def nbd_export(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start an NBD server over a local volume in a background loop; returns an nbd:// URI."""
    stack = contextlib.ExitStack()

    def start(size: int = 16 << 20, replicas: int = 1, chunk_size: int = 1 << 20) -> str:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        spec = blockstore.VolumeSpec(
            name="disk",
            size=size,
            chunk_size=chunk_size,
            replicas=replicas,
            policy=blockstore.WritePolicy(min_replicas=1),
        )

        @contextlib.asynccontextmanager
        async def serving() -> AsyncIterator[int]:
            async with (
                local_volume(tmp_path, spec, nodes=replicas) as (vol, _r),
                blockstore.serve_nbd({"disk": vol}) as server,
            ):
                yield server.port

        port = stack.enter_context(portal.wrap_async_context_manager(serving()))
        return f"nbd://127.0.0.1:{port}/disk"

    yield start
    stack.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
