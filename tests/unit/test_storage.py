import sqlite3

import pytest

from shop.storage.sqlite import SqliteDatabase


def test_nested_transactions_join_and_hooks_run_after_the_outer_commit(db):
    db.apply_schema(["CREATE TABLE t (x INTEGER)"])
    ran = []
    with db.transaction() as outer:
        outer.execute("INSERT INTO t VALUES (1)")
        with db.transaction() as inner:
            assert inner is outer
            db.on_commit(lambda: ran.append("hook"))
        assert ran == []
    assert ran == ["hook"]


def test_rollback_discards_writes_and_hooks(db):
    db.apply_schema(["CREATE TABLE t (x INTEGER)"])
    ran = []
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            db.on_commit(lambda: ran.append("hook"))
            raise RuntimeError
    assert db.query("SELECT * FROM t") == [] and ran == []


def test_a_failed_commit_leaves_the_connection_usable(db):
    """A deferred foreign key fails at COMMIT: the thread must be able to write again."""
    db.apply_schema(["CREATE TABLE p (id INTEGER PRIMARY KEY)",
                     "CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"])
    ran = []
    with pytest.raises(sqlite3.IntegrityError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO c VALUES (42)")
            db.on_commit(lambda: ran.append("hook"))
    assert not db.connection().in_transaction and ran == []
    with db.transaction() as conn:
        conn.execute("INSERT INTO p VALUES (1)")
    assert len(db.query("SELECT * FROM p")) == 1


def test_memory_and_foreign_urls_are_refused(tmp_path):
    from shop.errors import InvalidValue

    for url in ("sqlite:///:memory:", "postgresql://db/x", "sqlite:///"):
        with pytest.raises(InvalidValue):
            SqliteDatabase(url)


def test_waiting_too_long_for_the_write_lock_is_unavailable_not_a_crash(tmp_path):
    from shop.errors import Unavailable

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    holder, waiter = SqliteDatabase(url), SqliteDatabase(url, busy_timeout_ms=50)
    holder.apply_schema(["CREATE TABLE t (x INTEGER)"])
    try:
        with holder.transaction():
            with pytest.raises(Unavailable, match="database busy"):
                with waiter.transaction() as conn:
                    conn.execute("INSERT INTO t VALUES (1)")
        with waiter.transaction() as conn:  # and the waiter's connection still works
            conn.execute("INSERT INTO t VALUES (2)")
    finally:
        holder.close()
        waiter.close()
