"""The hop chain: ``GET /chain?k=N`` crosses k component calls (k = 0..4).

In the monolith each call is a function call; split, each is an HTTP hop between
processes. Arrivals are spread evenly over k: each round sends every target once, in a
seeded random order, so every k sees the same load and the same mix of predecessors (a
fixed order would make whichever request follows the floors pay for waking the shop's
processes from idle). The difference between k and k-1 is the cost of one call. Options: ``hops``, the list
of k to send (default 0..4); ``token``, the bearer token /chain asks for; ``floors``, request name -> absolute URL of floor endpoints
(a minimal Flask endpoint, and one that makes a bare nested call) taken in the same turn,
so the floors are measured by the same generator, at the same pace, at the same time.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from bench.load.openloop import OpenLoopUser, Send


def chain_name(k: int) -> str:
    return f"chain k={k}"


class HopChainUser(OpenLoopUser):
    def prepare(self) -> None:
        # (name, its prepared request: a Send whose bytes are built once, here)
        auth = {"Authorization": f"Bearer {self.plan.options['token']}"}
        targets = [(chain_name(k), self.client.prepare("GET", f"/chain?k={k}", name=chain_name(k),
                                                       headers=auth))
                   for k in self.plan.options.get("hops", [0, 1, 2, 3, 4])]
        for name, url in self.plan.options.get("floors", {}).items():
            # Each floor server gets its own keep-alive pool: sharing the user's pool
            # between hosts would reconnect on every switch and bill that to whoever is next.
            parts = urlsplit(url)
            client = self.http_client(f"{parts.scheme}://{parts.netloc}")
            targets.append((name, client.prepare("GET", parts.path or "/", name=name)))
        self._targets = targets
        self._round: list = []

    def next_request(self) -> tuple[str, Send]:
        if not self._round:
            self._round = self.rng.sample(self._targets, len(self._targets))
        return self._round.pop()
