"""Chain's client stub: the ``Link`` of a component hosted by another process, over a hop."""
from __future__ import annotations

from shop.hops import HopClient


class ChainClient:
    def __init__(self, hop: HopClient, component: str) -> None:
        self._hop = hop
        self._path = f"/internal/chain/{component}"
        self.component = component

    def forward(self, remaining: int) -> list[str]:
        return self._hop.call(self._path, {"remaining": remaining}, idempotent=True)["path"]
