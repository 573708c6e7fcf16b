"""Search's implementation: the catalog in its own tables, ranked with SQLite FTS5 (BM25)."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shop.errors import InvalidValue
from shop.search import catalog
from shop.search.api import Hit, Search, UnknownSku
from shop.storage import Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS search_products (
        rowid INTEGER PRIMARY KEY,
        sku TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        price_cents INTEGER NOT NULL)""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
        name, description, content='search_products', content_rowid='rowid')""",
    """CREATE TABLE IF NOT EXISTS search_catalog (
        id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, seed INTEGER NOT NULL)""",
]

MAX_LIMIT = 100
MAX_QUERY_TERMS = 16
TERM = re.compile(r"[A-Za-z0-9]+")
NAME_WEIGHT, DESCRIPTION_WEIGHT = 10.0, 1.0


@dataclass(frozen=True)
class SearchSettings:
    catalog_size: int = 10_000
    catalog_seed: int = 20261128


def seed_catalog(db: Database, settings: SearchSettings) -> None:
    """Fill the catalog once; a no-op when the same size and seed are already there."""
    with db.transaction() as conn:
        row = conn.execute("SELECT size, seed FROM search_catalog").fetchone()
        if row is not None and (row["size"], row["seed"]) == (settings.catalog_size,
                                                               settings.catalog_seed):
            return
        conn.execute("DELETE FROM search_products")
        conn.execute("INSERT INTO search_fts(search_fts) VALUES ('delete-all')")
        conn.executemany(
            "INSERT INTO search_products VALUES (?, ?, ?, ?, ?)",
            ((i, p.sku, p.name, p.description, p.price_cents)
             for i, p in enumerate(catalog.generate(settings.catalog_size,
                                                    settings.catalog_seed), start=1)))
        conn.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
        conn.execute("INSERT OR REPLACE INTO search_catalog VALUES (1, ?, ?)",
                     (settings.catalog_size, settings.catalog_seed))


def match_expression(q: str) -> str:
    """An FTS5 query matching any of the words of ``q`` (user text never reaches FTS syntax)."""
    terms = TERM.findall(q)[:MAX_QUERY_TERMS]
    if not terms:
        raise InvalidValue("q must contain at least one letter or digit")
    return " OR ".join(f'"{t.lower()}"' for t in terms)


def check_limit(limit: int, upper: int = MAX_LIMIT) -> None:
    if not 1 <= limit <= upper:
        raise InvalidValue(f"limit must be between 1 and {upper}")


class SearchService:
    """The local implementation of ``Search``."""

    def __init__(self, db: Database, settings: SearchSettings) -> None:
        self._db = db
        self.settings = settings

    def search(self, q: str, limit: int) -> list[Hit]:
        check_limit(limit)
        return self._query(match_expression(q), limit, "", ())

    def shard_search(self, q: str, shard: int, shards: int, limit: int) -> list[Hit]:
        check_limit(limit)
        if not 1 <= shards <= 1024 or not 0 <= shard < shards:
            raise InvalidValue("need 1 <= shards <= 1024 and 0 <= shard < shards")
        return self._query(match_expression(q), limit, "AND search_fts.rowid % ? = ?",
                           (shards, shard))

    def prices(self, skus: list[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.query(
            f"SELECT sku, price_cents FROM search_products WHERE sku IN ({marks})", tuple(wanted))
        found = {row["sku"]: row["price_cents"] for row in rows}
        for sku in wanted:
            if sku not in found:
                raise UnknownSku(f"no product with sku {sku!r}")
        return found

    def _query(self, match: str, limit: int, extra: str, params: tuple) -> list[Hit]:
        rows = self._db.query(
            f"""SELECT p.sku, p.name, p.price_cents,
                       bm25(search_fts, {NAME_WEIGHT}, {DESCRIPTION_WEIGHT}) AS rank
                FROM search_fts JOIN search_products p ON p.rowid = search_fts.rowid
                WHERE search_fts MATCH ? {extra}
                ORDER BY rank, p.sku LIMIT ?""", (match, *params, limit))
        return [Hit(r["sku"], r["name"], r["price_cents"], round(-r["rank"], 6)) for r in rows]


class Scatter:
    """Scatter a query to ``n`` shards in parallel and gather the best hits.

    The shards are reached through a ``Search`` handle: the local implementation, or a
    client stub when the topology's ``shard_calls`` is "http". A thread pool makes the n
    calls concurrently, so latency is the slowest shard's (plus queueing for the pool's
    ``max_shards`` threads when several scatters run at once).
    """

    def __init__(self, search: Search, max_shards: int = 32) -> None:
        self._search = search
        self.max_shards = max_shards
        self._pool = ThreadPoolExecutor(max_workers=max_shards, thread_name_prefix="scatter")

    def scatter(self, q: str, n: int, limit: int = 10) -> list[Hit]:
        if not 1 <= n <= self.max_shards:
            raise InvalidValue(f"n must be between 1 and {self.max_shards}")
        check_limit(limit)
        match_expression(q)  # refuse bad input before fanning out
        calls = [self._pool.submit(self._search.shard_search, q, i, n, limit) for i in range(n)]
        hits = [hit for call in calls for hit in call.result()]
        return sorted(hits, key=lambda h: (-h.score, h.sku))[:limit]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
