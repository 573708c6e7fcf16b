"""Search's implementation: the catalog in its own tables, ranked with SQLite FTS5 (BM25)."""
from __future__ import annotations

import re
from collections.abc import Callable
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
        id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, seed INTEGER NOT NULL,
        part TEXT NOT NULL DEFAULT 'all')""",
]

MAX_LIMIT = 100
MAX_QUERY_TERMS = 16
TERM = re.compile(r"[A-Za-z0-9]+")
NAME_WEIGHT, DESCRIPTION_WEIGHT = 10.0, 1.0


@dataclass(frozen=True)
class SearchSettings:
    catalog_size: int = 10_000
    catalog_seed: int = 20261128


def seed_catalog(db: Database, settings: SearchSettings,
                 keep: Callable[[int], bool] | None = None, part: str = "all") -> None:
    """Fill the catalog once: every product, or those whose number (``SKU-000001`` is 1)
    ``keep`` accepts, recorded as ``part``. A no-op when the same size, seed and part are
    already there."""
    with db.transaction() as conn:
        row = conn.execute("SELECT size, seed, part FROM search_catalog").fetchone()
        if row is not None and (row["size"], row["seed"], row["part"]) == (
                settings.catalog_size, settings.catalog_seed, part):
            return
        conn.execute("DELETE FROM search_products")
        conn.execute("INSERT INTO search_fts(search_fts) VALUES ('delete-all')")
        conn.executemany(
            "INSERT INTO search_products VALUES (?, ?, ?, ?, ?)",
            ((i, p.sku, p.name, p.description, p.price_cents)
             for i, p in enumerate(catalog.products(settings.catalog_size,
                                                    settings.catalog_seed), start=1)
             if keep is None or keep(i)))
        conn.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
        conn.execute("INSERT OR REPLACE INTO search_catalog VALUES (1, ?, ?, ?)",
                     (settings.catalog_size, settings.catalog_seed, part))


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
        return ranked(self._db, match_expression(q), limit)

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


def ranked(db: Database, match: str, limit: int) -> list[Hit]:
    """The best ``limit`` products of ``db`` for the FTS5 ``match`` expression, BM25-ranked."""
    rows = db.query(
        f"""SELECT p.sku, p.name, p.price_cents,
                   bm25(search_fts, {NAME_WEIGHT}, {DESCRIPTION_WEIGHT}) AS rank
            FROM search_fts JOIN search_products p ON p.rowid = search_fts.rowid
            WHERE search_fts MATCH ?
            ORDER BY rank, p.sku LIMIT ?""", (match, limit))
    return [Hit(r["sku"], r["name"], r["price_cents"], round(-r["rank"], 6)) for r in rows]
