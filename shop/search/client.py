"""Search's client stub: the ``Search`` interface over a hop."""
from __future__ import annotations

from shop.hops import HopClient
from shop.search.api import Hit


class SearchClient:
    def __init__(self, hop: HopClient) -> None:
        self._hop = hop

    def search(self, q: str, limit: int) -> list[Hit]:
        data = self._hop.call("/internal/search/search", {"q": q, "limit": limit}, idempotent=True)
        return [Hit(**hit) for hit in data["results"]]

    def prices(self, skus: list[str]) -> dict[str, int]:
        return self._hop.call("/internal/search/prices", {"skus": skus}, idempotent=True)["prices"]

    def shard_search(self, q: str, shard: int, shards: int, limit: int) -> list[Hit]:
        body = {"q": q, "shard": shard, "shards": shards, "limit": limit}
        data = self._hop.call("/internal/search/shard", body, idempotent=True)
        return [Hit(**hit) for hit in data["results"]]
