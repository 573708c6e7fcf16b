"""SQLite, the embedded default engine: a file per database URL.

Connections are per thread (gunicorn's gthread workers serve requests from a thread pool),
in WAL mode with a busy timeout so concurrent workers and processes wait instead of failing
with "database is locked". Write transactions start with ``BEGIN IMMEDIATE`` so two writers
never deadlock on a read-to-write lock upgrade.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shop.errors import InvalidValue, Unavailable
from shop.storage import Database, DuplicateKey

BUSY_TIMEOUT_MS = 10_000


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:///:memory:`` is refused:
    every thread would see its own empty database)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise InvalidValue(f"unsupported database URL {url!r}: only sqlite:///PATH is supported")
    path = url[len(prefix):]
    if not path or path == ":memory:":
        raise InvalidValue(f"database URL {url!r} names no file")
    return "/" + path.lstrip("/") if url.startswith("sqlite:////") else path


class SqliteDatabase(Database):
    """A SQLite database reached through one connection per thread."""

    def __init__(self, url: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.depth = 0
            self._local.after_commit = []
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls on the same thread join the outer one."""
        conn = self.connection()
        local = self._local
        if local.depth:
            local.depth += 1
            try:
                yield conn
            finally:
                local.depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            _raise_if_busy(exc)
            raise
        local.depth = 1
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            # Whether the body or the COMMIT failed, leave this thread's connection usable.
            local.after_commit.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                _raise_if_busy(exc)
            if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
                raise DuplicateKey(str(exc)) from exc
            raise
        finally:
            local.depth = 0
        hooks, local.after_commit = local.after_commit, []
        for hook in hooks:
            hook()

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the current transaction commits (now, if none is open)."""
        self.connection()
        if self._local.depth:
            self._local.after_commit.append(hook)
        else:
            hook()

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        if not getattr(self._local, "depth", 0):
            raise RuntimeError("execute() needs an open transaction on this thread")
        return self._local.conn.execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.connection().execute(sql, params).fetchone()

    def apply_schema(self, statements: list[str]) -> None:
        with self.transaction() as conn:
            for statement in statements:
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _raise_if_busy(exc: sqlite3.OperationalError) -> None:
    """Waiting longer than the busy timeout for the write lock is a 503, not a bug (500)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        raise Unavailable(f"database busy: {exc}") from exc
