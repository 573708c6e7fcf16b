"""Search: ranked full-text search over a seeded catalog, and prices. (The fan-out over
shards is shop/search/leaves.py.)"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shop.errors import NotFound


@dataclass(frozen=True)
class Hit:
    sku: str
    name: str
    price_cents: int
    score: float  # higher is better (negated BM25)


class UnknownSku(NotFound):
    code = "unknown_sku"


class Search(Protocol):
    def search(self, q: str, limit: int) -> list[Hit]:
        """The best ``limit`` (1..100) matches for ``q``. Raises InvalidValue."""

    def prices(self, skus: list[str]) -> dict[str, int]:
        """Price in cents of each SKU. Raises UnknownSku naming the first unknown one."""
