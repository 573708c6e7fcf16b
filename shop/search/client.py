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


class LeafClient:
    """The ``Leaf`` interface over a hop: replica ``replica`` of shard ``shard``, served by
    a leaf server of its own or, with the other leaves, by the search process."""

    def __init__(self, hop: HopClient, shard: int, replica: int) -> None:
        self._hop = hop
        self.shard, self.replica = shard, replica

    def query(self, q: str, limit: int, delay: str | None = None,
              seed: int | None = None) -> list[Hit]:
        body = {"q": q, "limit": limit, "shard": self.shard, "replica": self.replica,
                "delay": delay, "seed": seed}
        data = self._hop.call("/internal/leaf/query", body, idempotent=True)
        return [Hit(**hit) for hit in data["results"]]
