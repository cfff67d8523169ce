"""Opening the embedded store's file and running transactions on it safely from several processes.

Every process that opens the same file (``mycelium up`` runs three Sclerotia against one) has its
own connection. Writers serialise on SQLite's write lock: a write transaction starts with
``BEGIN IMMEDIATE``, so it holds the lock *before* it reads the revision it will allocate, and two
processes can never pick the same one. Readers start a deferred transaction so that every statement
of one call sees the same WAL snapshot. A call that finds the file locked fails fast with
:class:`sqlite3.OperationalError` (see :func:`is_busy`) after :data:`LOOP_BUSY_MS`; the async store
then retries it without blocking the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LOOP_BUSY_MS", "is_busy", "open_db", "read_txn", "write_txn"]

#: How long SQLite's own busy handler may block the calling (event loop) thread per attempt.
#: Transactions are short (well under a millisecond each), so a contended lock is usually free
#: again within this; longer waits are retried by the async caller with a non-blocking sleep.
LOOP_BUSY_MS = 20

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means "another connection holds the lock": safe to retry the whole call."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def open_db(path: str, schema: str, busy_timeout: float) -> sqlite3.Connection:
    """Connect, switch to WAL and create the schema, waiting up to ``busy_timeout`` for the lock.

    Several processes may open a fresh file at the same moment: the journal-mode switch and the
    schema script both need the write lock, so they are retried until ``busy_timeout`` passes.
    This blocks the caller, which is fine for a constructor that already does file I/O.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
    try:
        deadline = time.monotonic() + busy_timeout
        delay = 0.005
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
                break
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        db.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_MS}")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def write_txn(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction holding the write lock from its first statement; rolled back on error.

    ``COMMIT`` is inside the guarded block: if it fails (e.g. busy), the transaction is rolled back
    so the whole call can be retried without leaving a half-open transaction behind.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def read_txn(db: sqlite3.Connection) -> Iterator[None]:
    """A read transaction (one consistent snapshot), or nothing if one is already open."""
    nested = db.in_transaction
    if nested:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        if db.in_transaction:
            db.execute("COMMIT")
