"""Fan-out: ``GET /search/scatter?n=`` at several n, with and without an injected leaf tail.

Each arrival is one of the kinds in option ``kinds`` (name -> {n, delay, hedge_ms or
hedge_share, weight}),
taken in rounds: every round sends each kind ``weight`` times, in a seeded random order, so every kind sees
the same load and the same neighbours. A kind with a ``delay`` names one of the
deployment's latency injections and sends a fresh seed with each request; the seeds come
from the plan's seed, so every placement gets the same seeds in the same order and hence
the same injected delays (shop/search/leaves.py). A kind with ``observed`` (two names)
records the answer's per-shard times (``leaf_us``) under the first and their maximum under
the second: F(t)^n's leaf distribution and its slowest of n; with ``waits``, each leaf call's
wait for a pool thread; with ``injection`` (slow_p, slow_replicas, replicas, and two names),
the request's latency again under the first name when its seed drew a slow leaf, else the
second: the injected share, read without timing anything. Options: ``kinds``, ``token``
(a bearer token), ``query`` (default "lamp").
"""
from __future__ import annotations

from urllib.parse import quote

from bench.experiments.fanout.theory import drew_slow
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
        elif kind.get("hedge_share"):
            path += f"&hedge_share={kind['hedge_share']:g}"
        return name, self.client.prepare("GET", path, headers=self._headers, name=name)

    def observe(self, name: str, response: object, latency_us: int) -> dict[str, list[int]]:
        kind = self._kinds[name]
        observed = kind.get("observed")
        if not observed:
            return {}
        answer = response.json()
        leaf_us = answer.get("leaf_us") or []
        if not leaf_us:
            return {}
        every, slowest = observed
        out = {every: leaf_us, slowest: [max(leaf_us)]}
        if kind.get("waits") and answer.get("wait_us"):
            out[kind["waits"]] = answer["wait_us"]
        if kind.get("hedge_late") and answer.get("hedge_late_us") is not None:
            out[kind["hedge_late"]] = [max(1, answer["hedge_late_us"])]
        if kind.get("hedge_delay") and answer.get("hedge_ms") is not None:
            out[kind["hedge_delay"]] = [max(1, round(answer["hedge_ms"] * 1000))]
        injection = kind.get("injection")
        if injection:  # which requests drew a slow leaf: the shop's own draws, from the seed
            seed = int(response.url.rpartition("seed=")[2].partition("&")[0])
            slow, none = injection["names"]
            drew = drew_slow(seed, kind["n"], injection["slow_p"], injection["slow_replicas"],
                             injection["replicas"])
            out[slow if drew else none] = [latency_us]
        return out
