"""Fan-out: ``GET /search/scatter?n=`` at several n, with and without an injected leaf tail.

Each arrival is one of the kinds in option ``kinds`` (name -> {n, delay, hedge_ms, weight}),
taken in rounds: every round sends each kind ``weight`` times, in a seeded random order, so every kind sees
the same load and the same neighbours. A kind with a ``delay`` names one of the
deployment's latency injections and sends a fresh seed with each request; the seeds come
from the plan's seed, so every placement gets the same seeds in the same order and hence
the same injected delays (shop/search/leaves.py). A kind with ``observed`` (two names)
records the answer's per-shard times (``leaf_us``) under the first and their maximum under
the second: F(t)^n's leaf distribution and its slowest of n. Options: ``kinds``, ``token``
(a bearer token), ``query`` (default "lamp").
"""
from __future__ import annotations

from urllib.parse import quote

from bench.load.openloop import OpenLoopUser, Send


class FanoutUser(OpenLoopUser):
    observes = True

    def prepare(self) -> None:
        options = self.plan.options
        self._kinds = dict(options["kinds"])
        self._headers = {"Authorization": f"Bearer {options['token']}"}
        self._query = quote(options.get("query", "lamp"))
        self._round: list[str] = []

    def next_request(self) -> tuple[str, Send]:
        if not self._round:
            every = [name for name, kind in self._kinds.items() for _ in range(kind.get("weight", 1))]
            self._round = self.rng.sample(every, len(every))
        name = self._round.pop()
        kind = self._kinds[name]
        path = f"/search/scatter?q={self._query}&n={kind['n']}&limit=10"
        if kind.get("delay"):
            path += f"&delay={kind['delay']}&seed={self.rng.getrandbits(62)}"
        if kind.get("hedge_ms"):
            path += f"&hedge_ms={kind['hedge_ms']:.3f}"
        return name, self.client.prepare("GET", path, headers=self._headers, name=name)

    def observe(self, name: str, response: object) -> dict[str, list[int]]:
        observed = self._kinds[name].get("observed")
        if not observed:
            return {}
        leaf_us = response.json().get("leaf_us") or []
        if not leaf_us:
            return {}
        every, slowest = observed
        return {every: leaf_us, slowest: [max(leaf_us)]}
