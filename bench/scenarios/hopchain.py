"""The hop chain: ``GET /chain?k=N`` crosses k component calls (k = 0..4).

In the monolith each call is a function call; split, each is an HTTP hop between
processes. Arrivals are spread evenly over k (round robin), so every k sees the same load
and the difference between k and k-1 is the cost of one call. Option ``hops``: the list
of k to send (default 0..4).
"""
from __future__ import annotations

from itertools import cycle

from bench.scenarios.openloop import OpenLoopUser, Send


def chain_name(k: int) -> str:
    return f"chain k={k}"


class HopChainUser(OpenLoopUser):
    def prepare(self) -> None:
        self._ks = cycle(self.plan.options.get("hops", [0, 1, 2, 3, 4]))

    def next_request(self) -> tuple[str, Send]:
        k = next(self._ks)
        name = chain_name(k)
        return name, lambda context: self.client.get(f"/chain?k={k}", name=name, context=context)
