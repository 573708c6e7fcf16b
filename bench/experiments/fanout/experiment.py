"""Fan-out: how p99 compounds when one request waits for n leaves, against theory, and hedging.

``GET /search/scatter?n=`` asks n shards concurrently (shop/search/leaves.py). The split
placement is measured with every leaf replica a server of its own (``[leaves] processes``,
S shards x R replicas; the monolith's leaves are function calls on the same bounded pool),
so n leaves are n processes, not one process's queue.

One step per placement and trial sends every request kind in rounds, in a seeded random
order, open-loop at one rate: the plain fan-outs n = 1..N; the same with an injected leaf
tail (``tail``: base_ms always, slow_ms more with probability slow_p, drawn from the
request's seed, so every placement gets the same delays); and at one n, "one slow replica"
(the tail on replica 0 of every shard only) without and with hedging.

Theory beside measurement: if leaf latencies are independent with distribution F, a fan-out
of n takes the slowest of n, whose distribution is F(t)^n, so its q-quantile is F's
q^(1/n)-quantile; F is every leaf call of the same requests, as the scatterer timed it
(theory.py). For the injected tail the fraction of requests slower than slow_ms is 1-(1-p)^n:
the scenario also tells, from each request's seed, whether it drew a slow leaf, so the
injected share and the latency of the requests that drew none are read beside the measured
share, which is judged only where those stay well under slow_ms (analysis.py). Each leaf
call's wait for a pool thread is timed too: what the kinds of one step cost each other.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.experiments.base import Analysis, Experiment, Rung, RunSession, StepLoad
from bench.experiments.fanout.theory import (HEDGE_SHARE, drew_names, hedge_delay_name,
                                             hedge_late_name, observed_names, wait_name)
from bench.results.model import StepResult
from bench.results.reader import RunData
from shop.search.leaves import LeafDelay

if TYPE_CHECKING:
    from bench.render.document import Block
    from bench.system.launcher import LaunchSettings
    from shop.placement import Topology

TAIL, SLOW_REPLICA = "tail", "slow-replica"  # the injections' names in the deployment
PLAIN, HEDGED = "plain", "hedged"
SCENARIO = f"{__package__}.scenario"  # its locustfile, beside this module
CONFIDENCE_SLOW = 0.99  # the binomial interval of a slow fraction


def as_tuple(value: Any) -> tuple:
    """A list or tuple as a tuple; a single value (``--set fanout.ns=1``) as a 1-tuple."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@dataclass(frozen=True)
class FanoutSettings:
    ns: tuple[int, ...]  # the fan-outs measured, plain and with the tail
    rate: float  # req/s over every kind together
    warmup_s: float
    duration_s: float
    shards: int  # S: at least max(ns)
    replicas: int = 2  # R: hedging needs 2
    leaf_threads: int = 4  # gthread threads of each leaf server
    tail: LeafDelay = LeafDelay(base_ms=1.0, slow_p=0.02, slow_ms=50.0)
    slow_replica: LeafDelay = LeafDelay(base_ms=1.0, slow_p=0.08, slow_ms=50.0, slow_replicas=(0,))
    hedge_n: int = 16  # the fan-out hedging is measured at
    # None: the delay after which 5% of primaries are out, tracked by the scatter itself
    # under the step's load (shop/search/hedging.py); a number: that delay, fixed (ms)
    hedge_ms: float | None = None
    query: str = "lamp"
    variants: tuple[str, ...] = ("plain", "tail", "hedging")  # which kinds of request to send
    # n = 1 kinds are sent this many times a round (F is every leaf call the scatter timed,
    # so no kind is sent more for its sake; hedging's delay is calibrated apart)
    single_leaf_weight: int = 1
    trials: int | None = None  # None: the profile's

    def __post_init__(self) -> None:
        """Accept JSON-shaped values (lists, dicts: from the manifest or ``--set``); refuse
        what cannot be measured, with a message naming the setting."""
        fix = object.__setattr__
        fix(self, "ns", tuple(int(n) for n in as_tuple(self.ns)))
        fix(self, "variants", as_tuple(self.variants))
        for key in ("tail", "slow_replica"):
            if isinstance(getattr(self, key), Mapping):
                fix(self, key, LeafDelay(**getattr(self, key)))
        unknown = set(self.variants) - {PLAIN, TAIL, "hedging"}
        if unknown or not self.variants:
            raise ValueError(f"fanout.variants: choose from plain, tail, hedging (not {sorted(unknown)})")
        if not self.ns or min(self.ns) < 1 or 1 not in self.ns:
            raise ValueError("fanout.ns: fan-outs of at least 1, including 1 (F is the measured n=1)")
        if max(self.ns) > self.shards or self.hedge_n > self.shards:
            raise ValueError(f"fanout: every n (ns, hedge_n) must be at most shards ({self.shards})")
        if "hedging" in self.variants and self.replicas < 2:
            raise ValueError("fanout: hedging needs replicas >= 2")


# Rates are low because a split fan-out is dear: one leaf hop costs the system ~2 CPU-ms
# (both ends) on this project's 2-core machine, so n = 16 is ~40 CPU-ms per request.
PROFILES = {
    # the quick run measures compounding alone (plain kinds: p90 of the slowest of up to 8
    # leaves with enough samples in both placements); the tail and hedging need the full run
    "quick": FanoutSettings(ns=(1, 2, 4, 8), rate=40, warmup_s=0.5, duration_s=6, shards=8,
                            hedge_n=8, variants=("plain",)),
    "full": FanoutSettings(ns=(1, 2, 4, 8, 16, 32), rate=12, warmup_s=2, duration_s=90,
                           shards=32, hedge_n=16),
    "smoke": FanoutSettings(ns=(1, 4), rate=30, warmup_s=0.5, duration_s=2, shards=4, hedge_n=4),
}


@dataclass(frozen=True)
class Kind:
    """One request kind of the step: a fan-out n with an injection and maybe a hedge."""

    name: str
    n: int
    variant: str  # PLAIN, TAIL, SLOW_REPLICA or HEDGED
    delay: str | None = None
    hedged: bool = False
    weight: int = 1  # times sent per round

    def base(self) -> str:
        """The n = 1 kind whose measured distribution predicts this one."""
        return kind_name(1, SLOW_REPLICA if self.variant == HEDGED else self.variant)


def kind_name(n: int, variant: str) -> str:
    return {PLAIN: f"n={n}", TAIL: f"n={n} tail", SLOW_REPLICA: f"n={n} one slow replica",
            HEDGED: f"n={n} one slow replica, hedged"}[variant]


def kinds(settings: FanoutSettings) -> list[Kind]:
    """Every kind the step sends: each n plain and with the tail; hedging's three (n = 1 and
    hedge_n with one slow replica, and hedge_n hedged); as ``variants`` selects."""
    def weight(n: int) -> int:
        return settings.single_leaf_weight if n == 1 else 1

    out = [Kind(kind_name(n, v), n, v, TAIL if v == TAIL else None, weight=weight(n))
           for v in (PLAIN, TAIL) if v in settings.variants for n in settings.ns]
    if "hedging" in settings.variants:
        for n in dict.fromkeys((1, settings.hedge_n)):
            out.append(Kind(kind_name(n, SLOW_REPLICA), n, SLOW_REPLICA, SLOW_REPLICA,
                            weight=weight(n)))
        out.append(Kind(kind_name(settings.hedge_n, HEDGED), settings.hedge_n, HEDGED,
                        SLOW_REPLICA, hedged=True))
    return out


class Fanout(Experiment):
    """GET /search/scatter?n= for each n, plain and with an injected leaf tail, hedged or
    not, against the order-statistics prediction from the leaves' own timings."""

    name = "fanout"
    title = "Fan-out: p99 against n, against F(t)^n, and hedged"
    needs_own_processes = "it starts the placement with leaf servers and leaf delays of its own"
    default_order = 30

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> FanoutSettings:
        """Raises ValueError naming a setting that cannot be measured."""
        return replace(PROFILES[profile], **dict(overrides or {}))

    def rungs(self, settings: FanoutSettings) -> list[Rung]:
        return [Rung("fanout", float(settings.rate))]

    def placement(self, settings: FanoutSettings, topology: "Topology",
                  launch: "LaunchSettings") -> tuple["Topology", "LaunchSettings"]:
        """Leaves as servers wherever the gateway scatters over hops; function calls in a
        placement that scatters in-process. The injections join the launch."""
        leaves = replace(topology.leaves, shards=settings.shards, replicas=settings.replicas,
                         threads=settings.leaf_threads,
                         processes=topology.shard_calls == "http")
        delays = {**launch.leaf_delays, TAIL: settings.tail, SLOW_REPLICA: settings.slow_replica}
        return replace(topology, leaves=leaves), replace(launch, leaf_delays=delays)

    def prepare(self, session: RunSession, settings: FanoutSettings, placement: str) -> None:
        from bench.system.shopclient import funded_users, log_in
        shop = session.shop(self, placement)
        state = session.state_of(self)
        state.setdefault("users", {})[placement] = funded_users(shop.base_url, 1)
        state.setdefault("leaves", {})[placement] = leaf_costs(shop)
        state.setdefault("tokens", {})[placement] = log_in(shop.base_url, state["users"][placement])

    def before_trial(self, session: RunSession, settings: FanoutSettings, trial: int) -> None:
        from bench.system.shopclient import log_in
        state = session.state_of(self)
        state["tokens"] = {p: log_in(session.shop(self, p).base_url, users)
                           for p, users in state["users"].items()}

    def load(self, session: RunSession, settings: FanoutSettings, rung: Rung,
             placement: str) -> StepLoad:
        state = session.state_of(self)
        return StepLoad(SCENARIO, settings.warmup_s, settings.duration_s, session.arrival, {
            "token": state["tokens"][placement][0], "query": settings.query,
            "kinds": {k.name: {"n": k.n, "delay": k.delay, "weight": k.weight,
                               **(hedge_of(settings) if k.hedged else {}),
                               "observed": observed_names(k.name), "waits": wait_name(k.name),
                               "hedge_late": hedge_late_name(k.name) if k.hedged else None,
                               "hedge_delay": hedge_delay_name(k.name) if k.hedged else None,
                               "injection": injection(k, settings)} for k in kinds(settings)}})

    def after_step(self, session: RunSession, settings: FanoutSettings, step: StepResult,
                   result: Any) -> None:
        state = session.state_of(self)
        step.extra.update(hedge_ms=settings.hedge_ms,
                          **{f"leaf_{k}": v for k, v in state["leaves"][step.key.placement].items()})

    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        from bench.experiments.fanout.analysis import analyse_fanout
        return analyse_fanout(self, run, resamples, seed)

    def report(self, run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list["Block"]:
        from bench.experiments.fanout.report import fanout_report
        return fanout_report(run, result, figures_dir)


def hedge_of(settings: FanoutSettings) -> dict[str, float]:
    """How a hedged kind asks for its hedge: the fixed delay, else the share to track."""
    if settings.hedge_ms is not None:
        return {"hedge_ms": settings.hedge_ms}
    return {"hedge_share": HEDGE_SHARE}


def injection(kind: Kind, settings: FanoutSettings) -> dict[str, Any] | None:
    """What the scenario needs to tell which requests of ``kind`` drew a slow leaf (None for
    a kind without an injected delay, or hedged: a backup may rescue a slow primary)."""
    if kind.delay is None or kind.hedged:
        return None
    delay = settings.tail if kind.delay == TAIL else settings.slow_replica
    return {"slow_p": delay.slow_p, "slow_replicas": list(delay.slow_replicas),
            "replicas": settings.replicas, "names": list(drew_names(kind.name))}


def leaf_costs(shop: Any) -> dict[str, Any]:
    """What the leaf servers cost just after start-up: how many, and per server the mean CPU
    seconds spent so far (master and worker: the start-up) and PSS in MiB."""
    import psutil

    from shop.placement import leaf_of
    cpu, pss = [], []
    for name, server in shop.processes.items():
        if leaf_of(name) is None:
            continue
        try:
            group = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            cpu.append(sum(sum(p.cpu_times()[:2]) for p in group))
            pss.append(sum(p.memory_full_info().pss for p in group) / 2**20)
        except psutil.Error:
            continue
    if not cpu:
        return {"servers": 0}
    return {"servers": len(cpu), "startup_cpu_s_mean": round(float(np.mean(cpu)), 3),
            "pss_mib_mean": round(float(np.mean(pss)), 1),
            "pss_mib_total": round(float(np.sum(pss)), 1)}


EXPERIMENT = Fanout()
