"""The embedded store's data model on one SQLite connection: synchronous and I/O-bound only.

Revisions, history and leases follow etcd's MVCC rules (revision 1 is the empty store; every write
txn takes the next revision; deleting a key resets its version; a missing key's value compares
false). :class:`~mycelium.globaldb.SQLiteStore` wraps this in the async :class:`KVStore` API.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ._errors import CompactedError, FutureRevisionError, InvalidRequestError, LeaseNotFoundError
from ._model import (
    Compare,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyRange,
    KeyValue,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
    check_txn,
)
from ._sqlite_conn import open_db, read_txn, write_txn

__all__ = ["SQLiteCore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL,
    lease INTEGER NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (revision, sub)
);
CREATE INDEX IF NOT EXISTS history_key ON history (key, revision);
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, expires_at REAL NOT NULL
);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compact_revision', 0), ('lease_seq', 0);
"""

_KV_COLS = "key, value, create_rev, mod_rev, version, lease"
#: Rows fetched per watch poll: bounds memory when a watcher resumes far behind.
WATCH_BATCH = 1000


def _kv(row: tuple[bytes, bytes, int, int, int, int]) -> KeyValue:
    return KeyValue(bytes(row[0]), bytes(row[1]), row[2], row[3], row[4], row[5])


def _where(r: KeyRange) -> tuple[str, tuple[bytes, ...]]:
    if not r.range_end:
        return "key = ?", (r.key,)
    if r.range_end == b"\x00":
        return "key >= ?", (r.key,)
    return "key >= ? AND key < ?", (r.key, r.range_end)


class SQLiteCore:
    """All state transitions of the embedded store; every public method is one SQL transaction.

    Write methods hold SQLite's write lock for their whole transaction and read methods read one
    snapshot, so the same rules hold when several processes open the file (see ``_sqlite_conn``).
    A method that finds the file locked raises :class:`sqlite3.OperationalError` having changed
    nothing, so the caller may retry it.
    """

    def __init__(self, path: str, clock: Callable[[], float], busy_timeout: float = 5.0) -> None:
        self._db = open_db(path, _SCHEMA, busy_timeout)
        self._clock = clock
        self._path = path
        self._busy_timeout = busy_timeout
        self._wrote = False
        #: Committed transactions of this connection that advanced the revision (wakes watchers).
        self.commits = 0

    @contextmanager
    def _write(self) -> Iterator[None]:
        self._wrote = False
        with write_txn(self._db):
            yield
        if self._wrote:
            self.commits += 1

    def close(self) -> None:
        self._db.close()

    # -- meta -----------------------------------------------------------------------------------
    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def _set_meta(self, name: str, value: int) -> None:
        self._db.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))

    @property
    def revision(self) -> int:
        return self._meta("revision")

    @property
    def compact_revision(self) -> int:
        return self._meta("compact_revision")

    def db_size(self) -> int:
        page_count = self._db.execute("PRAGMA page_count").fetchone()[0]
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(page_count) * int(page_size)

    def backup(self, path: str) -> None:
        """Copy one consistent snapshot to ``path``; safe in a worker thread for a file store.

        A file store is read through a connection of its own (the copy is one backup step, so it
        holds one read snapshot while other processes keep committing); ``:memory:`` has no file
        to reopen and is copied from the store's connection.
        """
        memory = self._path == ":memory:"
        source = self._db if memory else sqlite3.connect(self._path, timeout=self._busy_timeout)
        try:
            dest = sqlite3.connect(path)
            try:
                source.backup(dest)
            finally:
                dest.close()
        finally:
            if not memory:
                source.close()

    # -- reads ----------------------------------------------------------------------------------
    def _current(self, key: bytes) -> KeyValue | None:
        row = self._db.execute(f"SELECT {_KV_COLS} FROM kv WHERE key = ?", (key,)).fetchone()  # noqa: S608 - fixed column/clause fragments, values bound
        return _kv(row) if row else None

    def _range_rows(self, r: KeyRange, revision: int) -> list[KeyValue]:
        where, args = _where(r)
        current = self.revision
        if revision <= 0 or revision == current:
            rows = self._db.execute(f"SELECT {_KV_COLS} FROM kv WHERE {where} ORDER BY key", args)  # noqa: S608 - fixed column/clause fragments, values bound
            return [_kv(row) for row in rows]
        if revision > current:
            raise FutureRevisionError(revision, current)
        if revision < self.compact_revision:
            raise CompactedError(revision, self.compact_revision)
        rows = self._db.execute(
            f"SELECT {_KV_COLS}, deleted FROM history WHERE {where} AND revision <= ? "  # noqa: S608 - fixed column/clause fragments, values bound
            "ORDER BY key, revision DESC, sub DESC",
            (*args, revision),
        )
        out: list[KeyValue] = []
        last: bytes | None = None
        for row in rows:
            if row[0] == last:
                continue
            last = row[0]
            if not row[6]:
                out.append(_kv(row[:6]))
        return out

    def range(self, op: Get, revision: int = 0) -> RangeResult:
        if op.limit < 0:
            raise InvalidRequestError(f"limit must be >= 0 (0 = no limit), got {op.limit}")
        with read_txn(self._db):
            kvs = self._range_rows(op.range, revision)
            current = self.revision
        count = len(kvs)
        if op.count_only:
            return RangeResult((), count, False, current)
        more = bool(op.limit) and count > op.limit
        if op.limit:
            kvs = kvs[: op.limit]
        if op.keys_only:
            kvs = [
                KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in kvs
            ]
        return RangeResult(tuple(kvs), count, more, current)

    # -- writes ---------------------------------------------------------------------------------
    def _record(self, rev: int, sub: int, kv: KeyValue, deleted: bool) -> None:
        self._db.execute(
            "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rev,
                sub,
                kv.key,
                kv.value,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease,
                int(deleted),
            ),
        )

    def _put(self, op: Put, rev: int, sub: int) -> PutResult:
        if op.lease and not self._lease_exists(op.lease):
            raise LeaseNotFoundError(op.lease)
        prev = self._current(op.key)
        kv = KeyValue(
            op.key,
            op.value,
            prev.create_revision if prev else rev,
            rev,
            prev.version + 1 if prev else 1,
            op.lease,
        )
        self._db.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        )
        self._record(rev, sub, kv, deleted=False)
        return PutResult(rev, prev if op.prev_kv else None)

    def _delete(self, op: Delete, rev: int, sub: int) -> tuple[DeleteResult, int]:
        victims = self._range_rows(op.range, 0)
        for kv in victims:
            self._db.execute("DELETE FROM kv WHERE key = ?", (kv.key,))
            self._record(rev, sub, KeyValue(kv.key, b"", 0, rev, 0, 0), deleted=True)
            sub += 1
        result = DeleteResult(rev, len(victims), tuple(victims) if op.prev_kv else ())
        return result, sub

    def _apply(self, ops: Sequence[Op]) -> tuple[int, tuple[OpResult, ...]]:
        """Run ``ops`` at the next revision; the revision advances only if something changed."""
        rev = self.revision + 1
        sub = 0
        results: list[OpResult] = []
        for op in ops:
            if isinstance(op, Get):
                got = self.range(op)
                results.append(RangeResult(got.kvs, got.count, got.more, rev if sub else rev - 1))
            elif isinstance(op, Put):
                results.append(self._put(op, rev, sub))
                sub += 1
            else:
                deleted, sub = self._delete(op, rev, sub)
                results.append(deleted)
        final = rev if sub else rev - 1
        if sub:
            self._set_meta("revision", rev)
            self._wrote = True
        fixed: list[OpResult] = []
        for r in results:  # every result of a write txn reports the txn's revision, as etcd does
            if isinstance(r, PutResult):
                fixed.append(PutResult(final, r.prev_kv))
            elif isinstance(r, DeleteResult):
                fixed.append(DeleteResult(final, r.deleted, r.prev_kvs))
            else:
                fixed.append(RangeResult(r.kvs, r.count, r.more, final))
        return final, tuple(fixed)

    def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        check_txn(success, "success")
        check_txn(failure, "failure")
        # The write lock is held from the first statement, so the compares, the revision read by
        # _apply and the commit form one step that no other process can interleave with.
        with self._write():
            self._expire(self._clock())
            ok = all(c.holds_for(self._current(c.key)) for c in compare)
            revision, responses = self._apply(success if ok else failure)
        return TxnResult(ok, revision, responses)

    def compact(self, revision: int) -> None:
        with self._write():
            current = self.revision
            if revision > current:
                raise FutureRevisionError(revision, current)
            if revision <= self.compact_revision:
                raise CompactedError(revision, self.compact_revision)
            # Keep, for every key, its newest row below the compaction point (reads at >= revision
            # need it) unless that row is a deletion; drop everything else below the point.
            self._db.execute(
                "DELETE FROM history WHERE revision < :r AND (deleted OR EXISTS ("
                " SELECT 1 FROM history AS newer WHERE newer.key = history.key AND newer.revision < :r"
                " AND (newer.revision > history.revision"
                "      OR (newer.revision = history.revision AND newer.sub > history.sub))))",
                {"r": revision},
            )
            self._set_meta("compact_revision", revision)

    # -- watch ----------------------------------------------------------------------------------
    def events_since(self, r: KeyRange, start: int, prev_kv: bool) -> tuple[list[Event], int]:
        """Up to :data:`WATCH_BATCH` events at revisions >= ``start`` (whole revisions only).

        Also returns the store revision of the snapshot read: a watcher that got no events needs
        to look again only once the revision has moved past it (see ``SQLiteStore``).
        """
        with read_txn(self._db):
            current = self.revision
            if start < self.compact_revision:
                raise CompactedError(start, self.compact_revision)
            where, args = _where(r)
            rows = self._db.execute(
                f"SELECT {_KV_COLS}, deleted, revision FROM history WHERE revision >= ? AND {where} "  # noqa: S608 - fixed column/clause fragments, values bound
                "ORDER BY revision, sub LIMIT ?",
                (start, *args, WATCH_BATCH),
            ).fetchall()
            if len(rows) == WATCH_BATCH:  # never split a revision across two batches
                last = rows[-1][7]
                rows = [row for row in rows if row[7] != last] or rows
            events: list[Event] = []
            for row in rows:
                kv = _kv(row[:6])
                prev = self._previous(kv.key, row[7]) if prev_kv else None
                events.append(Event(EventType.DELETE if row[6] else EventType.PUT, kv, prev))
        return events, current

    def _previous(self, key: bytes, revision: int) -> KeyValue | None:
        row = self._db.execute(
            f"SELECT {_KV_COLS}, deleted FROM history WHERE key = ? AND revision < ? "  # noqa: S608 - fixed column/clause fragments, values bound
            "ORDER BY revision DESC, sub DESC LIMIT 1",
            (key, revision),
        ).fetchone()
        return None if row is None or row[6] else _kv(row[:6])

    # -- leases ---------------------------------------------------------------------------------
    def _lease_exists(self, lease_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM lease WHERE id = ?", (lease_id,)).fetchone() is not None

    def lease_grant(self, ttl: int, lease_id: int) -> int:
        if ttl < 1:
            raise InvalidRequestError(f"lease ttl must be >= 1 second, got {ttl}")
        if lease_id < 0:
            raise InvalidRequestError(f"lease id must be > 0 (or 0 to pick one), got {lease_id}")
        with self._write():  # ids come from lease_seq under the write lock: unique across processes
            if lease_id == 0:
                lease_id = self._meta("lease_seq") + 1
                while self._lease_exists(lease_id):
                    lease_id += 1
                self._set_meta("lease_seq", lease_id)
            elif self._lease_exists(lease_id):
                raise InvalidRequestError(f"lease id {lease_id:#x} is already in use; pick another or use 0")
            self._db.execute("INSERT INTO lease VALUES (?, ?, ?)", (lease_id, ttl, self._clock() + ttl))
        return lease_id

    def lease_revoke(self, lease_id: int) -> int:
        """Delete the lease and its keys in one revision; returns the store revision afterwards."""
        with self._write():
            if not self._lease_exists(lease_id):
                raise LeaseNotFoundError(lease_id)
            self._revoke(lease_id)
            return self.revision

    def _revoke(self, lease_id: int) -> None:
        keys = [
            bytes(k)
            for (k,) in self._db.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,))
        ]
        self._db.execute("DELETE FROM lease WHERE id = ?", (lease_id,))
        if keys:
            self._apply([Delete(KeyRange(k)) for k in keys])

    def lease_keepalive(self, lease_id: int) -> int:
        with self._write():  # the new deadline is in the shared file: every process sees it
            self._expire(self._clock())
            row = self._db.execute("SELECT ttl FROM lease WHERE id = ?", (lease_id,)).fetchone()
            if row is None:
                raise LeaseNotFoundError(lease_id)
            self._db.execute(
                "UPDATE lease SET expires_at = ? WHERE id = ?", (self._clock() + row[0], lease_id)
            )
        return int(row[0])

    def lease_info(self, lease_id: int, keys: bool) -> tuple[int, int, tuple[bytes, ...]]:
        with read_txn(self._db):
            row = self._db.execute("SELECT ttl, expires_at FROM lease WHERE id = ?", (lease_id,)).fetchone()
            if row is None:
                raise LeaseNotFoundError(lease_id)
            names: tuple[bytes, ...] = ()
            if keys:
                names = tuple(
                    bytes(k)
                    for (k,) in self._db.execute(
                        "SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,)
                    )
                )
        remaining = max(0, math.ceil(row[1] - self._clock()))
        return remaining, int(row[0]), names

    def expire(self) -> int:
        """Revoke every lease whose deadline passed; returns how many."""
        now = self._clock()
        if self._db.execute("SELECT 1 FROM lease WHERE expires_at <= ? LIMIT 1", (now,)).fetchone() is None:
            return 0
        # Re-read under the write lock: another process may have revoked them meanwhile, and a
        # lease is revoked (its keys deleted) by whichever process gets the lock first, once.
        with self._write():
            n = self._expire(now)
        return n

    def _expire(self, now: float) -> int:
        due = [
            lid
            for (lid,) in self._db.execute("SELECT id FROM lease WHERE expires_at <= ? ORDER BY id", (now,))
        ]
        for lid in due:
            self._revoke(lid)
        return len(due)
