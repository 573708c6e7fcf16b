"""Storage the components share: one ``Database`` per database URL, whatever the engine.

A component owns its tables; several components may own tables in the same database (the
monolith points every URL at one database), and then a ``transaction`` opened by one of them
is joined by the others on the same thread, which is what makes a monolith checkout one ACID
transaction.

The components write SQL once, with ``?`` placeholders and the types SQLite names
(INTEGER, REAL, TEXT); each engine translates what it must. Where a race needs a lock the
engines differ: a SQLite write transaction holds the whole database (``BEGIN IMMEDIATE``),
PostgreSQL locks rows, so a read that a write will depend on ends with ``db.lock_rows``
(" FOR UPDATE" there, nothing on SQLite) and a claim of queued rows with ``db.claim_rows``
(" FOR UPDATE SKIP LOCKED").

Engines: ``sqlite:///PATH`` (the embedded default) and ``postgresql://...`` (psycopg 3 with a
connection pool per process; the database is created on first use).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shop.errors import InvalidValue


class DuplicateKey(Exception):
    """A write broke a UNIQUE or PRIMARY KEY constraint (on any engine)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Mapping[str, Any] | None: ...

    def fetchall(self) -> list[Mapping[str, Any]]: ...


class Connection(Protocol):
    """What a transaction hands its body: ``execute`` with ``?`` placeholders."""

    def execute(self, sql: str, params: tuple | dict = ()) -> Cursor: ...


class Database(ABC):
    """One database reached from every thread of a process. Rows are read by column name."""

    url: str
    lock_rows: str = ""  # appended to a SELECT whose rows the transaction will update
    claim_rows: str = ""  # appended to a SELECT of queued rows several workers claim

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction; nested calls on the same thread join the outer one.
        Raises DuplicateKey for a unique violation, Unavailable when the database cannot
        answer in time."""

    @abstractmethod
    def execute(self, sql: str, params: tuple | dict = ()) -> Cursor:
        """A statement in this thread's open transaction (raises RuntimeError if none)."""

    @abstractmethod
    def on_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the current transaction commits (now, if none is open)."""

    @abstractmethod
    def query(self, sql: str, params: tuple | dict = ()) -> list[Mapping[str, Any]]:
        """Rows of a read: in this thread's open transaction if any, else on its own."""

    def query_one(self, sql: str, params: tuple | dict = ()) -> Mapping[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    def apply_schema(self, statements: list[str]) -> None:
        """Create what is missing (statements are idempotent); safe from several processes."""

    @abstractmethod
    def close(self) -> None: ...


def open_database(url: str) -> Database:
    """The ``Database`` of a URL. Raises InvalidValue for an engine this shop cannot use."""
    if url.startswith("sqlite:"):
        from shop.storage.sqlite import SqliteDatabase
        return SqliteDatabase(url)
    if url.startswith(("postgresql://", "postgres://")):
        from shop.storage.postgres import PostgresDatabase
        return PostgresDatabase(url)
    raise _unsupported(url)


def _unsupported(url: str) -> InvalidValue:
    return InvalidValue(f"unsupported database URL {url!r}: "
                        f"use sqlite:///PATH or postgresql://USER@HOST:PORT/NAME")


def check_url(url: str) -> None:
    """Raise InvalidValue unless ``url`` names a database this shop can open (no I/O)."""
    if url.startswith("sqlite:"):
        from shop.storage.sqlite import sqlite_path
        sqlite_path(url)
    elif url.startswith(("postgresql://", "postgres://")):
        from shop.storage.postgres_url import database_name  # psycopg is an optional extra
        database_name(url)
    else:
        raise _unsupported(url)


class Databases:
    """One ``Database`` per distinct URL, so components sharing a URL share connections."""

    def __init__(self) -> None:
        self._by_url: dict[str, Database] = {}

    def get(self, url: str) -> Database:
        if url not in self._by_url:
            self._by_url[url] = open_database(url)
        return self._by_url[url]

    def close(self) -> None:
        for db in self._by_url.values():
            db.close()
