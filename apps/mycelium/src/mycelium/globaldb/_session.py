"""A session: one lease kept alive by a background task for as long as the session is open.

It is the liveness primitive under locks, elections and the Sclerotia liveness entries: keys put
with ``session.lease_id`` vanish within ``ttl`` seconds of the process dying, and while the
process lives they stay. Same idea (and defaults: 60 s TTL, renew every TTL/3) as etcd's
``concurrency.Session``.
"""

from __future__ import annotations

import contextlib
from types import TracebackType

import anyio
import anyio.abc

from ._errors import GlobalDBError, InvalidRequestError, LeaseNotFoundError, LockLostError
from ._store import KVStore

__all__ = ["Session"]


class Session:
    """``async with Session(store, ttl=60) as s:`` grants a lease, renews it, revokes it on exit.

    ``keepalive=False`` leaves renewal to someone else (or to nobody: the lease then expires after
    ``ttl``, which is how tests play a crashed holder). ``lost`` is set once the lease is known to
    be gone; work guarded by it must stop.
    """

    def __init__(self, store: KVStore, ttl: int = 60, *, keepalive: bool = True) -> None:
        if ttl < 1:
            raise InvalidRequestError(f"Session ttl must be >= 1 second, got {ttl}")
        self.store = store
        self.ttl = ttl
        self._keepalive = keepalive
        self._lease_id = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._lost: anyio.Event | None = None

    @property
    def lease_id(self) -> int:
        if not self._lease_id:
            raise InvalidRequestError("the session is not open: use `async with Session(...)`")
        return self._lease_id

    @property
    def lost(self) -> bool:
        return self._lost is not None and self._lost.is_set()

    async def wait_lost(self) -> None:
        assert self._lost is not None, "session not open"
        await self._lost.wait()

    def check(self) -> None:
        """Raise :class:`LockLostError` if the lease is known to be gone."""
        if self.lost:
            raise LockLostError(f"session lease {self._lease_id:#x} expired or was revoked")

    async def __aenter__(self) -> Session:
        grant = await self.store.lease_grant(self.ttl)
        self._lease_id = grant.id
        self._lost = anyio.Event()
        if self._keepalive:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._renew_forever)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(et, exc, tb)
            self._tg = None
        if not self.lost:
            with anyio.CancelScope(shield=True), contextlib.suppress(GlobalDBError):
                await self.store.lease_revoke(self._lease_id)
        self._lease_id = 0

    async def _renew_forever(self) -> None:
        assert self._lost is not None
        interval = max(self.ttl / 3, 0.2)
        last_ok = anyio.current_time()
        while True:
            await anyio.sleep(interval)
            try:
                await self.store.lease_keepalive(self._lease_id)
                last_ok = anyio.current_time()
            except LeaseNotFoundError:
                self._lost.set()
                return
            except GlobalDBError:
                if anyio.current_time() - last_ok > self.ttl:  # the lease surely expired meanwhile
                    self._lost.set()
                    return
