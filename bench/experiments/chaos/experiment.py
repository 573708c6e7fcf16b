"""Chaos: the user mix under injected faults, with the consistency oracle after each step.

One rung per fault plan (bench/system/faults.py): each step sends keyed top-ups, keyed checkouts,
searches and inbox reads open-loop while the plan's faults are applied to the placement,
which runs *supervised* (a crashed server is restarted after the fault's downtime). After the
load: every fault is undone, the shop is given ``quiet_s`` to settle, the oracle
(bench/experiments/chaos/oracle.py) resolves the writes whose outcome the generator did not learn and checks
money, charges and notifications against the operation log, and waits (bounded) for the
outbox to drain. Errors and a missed rate are what faults do, so they do not invalidate a
step here; a late or saturated generator still does.

Reported per placement and plan: availability during the faults and outside them, p99
during and outside, time to recover after each fault, restarts, breaker transitions, the
notification lag, and the oracle's verdict; with a timeline per plan.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.experiments.base import Analysis, Experiment, Rung, RunSession, StepLoad
from bench.experiments.fanout.experiment import as_tuple
from bench.load.generator import MAX_LATENESS_P99_US
from bench.results.model import ERRORS, NOT_STEADY, RATE_MISSED, StepKey, StepResult
from bench.results.store import write_json_atomic
from bench.system.faults import KINDS, NETWORK_KINDS, TARGETS, FaultInjector, FaultPlan, load_plan

if TYPE_CHECKING:
    from bench.render.document import Block
    from bench.results.reader import RunData
    from bench.system.launcher import LaunchSettings, RunningShop
    from shop.placement import Topology

SCENARIO = f"{__package__}.scenario"  # its locustfile, beside this module
DETAILS = "chaos.json"  # per step, beside its operation log: faults applied, oracle's verdict
# What faults do to a step, and so no reason to set it aside here.
# What faults are meant to cause: not a spoiled measurement here (the other reasons are)
EXPECTED_UNDER_FAULTS = (ERRORS, RATE_MISSED, NOT_STEADY)


@dataclass(frozen=True)
class ChaosSettings:
    plans: tuple[str, ...]  # built-in plan names (bench/system/faults.py PLANS) or .toml plan files
    rate: float  # req/s
    warmup_s: float
    duration_s: float  # measured; must outlast the plans' last fault by the recovery margin
    users: int = 12
    quiet_s: float = 3.0  # after healing, before the oracle looks
    settle_timeout_s: float = 30.0  # how long the oracle waits for the outbox to drain
    time_scale: float = 1.0  # multiplies every fault time (a short test run)
    instances: int = 0  # > 0: this many instances of each fault instead of the plan's

    def __post_init__(self) -> None:
        """Accept JSON-shaped values (``--set``, the manifest); refuse what cannot run, with
        a message naming the setting."""
        object.__setattr__(self, "plans", as_tuple(self.plans))
        if not self.plans or not all(isinstance(p, str) for p in self.plans):
            raise ValueError("chaos.plans: one or more plan names or .toml files")
        for key, low in (("rate", 0.1), ("warmup_s", 0.0), ("duration_s", 0.5), ("quiet_s", 0.0),
                         ("settle_timeout_s", 1.0), ("time_scale", 0.01)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise ValueError(f"chaos.{key} must be a number of at least {low:g}, not {value!r}")
        for key, low in (("users", 1), ("instances", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"chaos.{key} must be a whole number of at least {low}, "
                                 f"not {value!r}")


PROFILES = {
    "quick": ChaosSettings(plans=("crash-billing", "crash-notify"), rate=30, warmup_s=2,
                           duration_s=44),
    # every fault kind against every dependency: 28 plans, about 50 min for two placements
    "full": ChaosSettings(plans=tuple(f"{k}-{t}" for k in KINDS for t in TARGETS),
                          rate=40, warmup_s=2, duration_s=44),
    "smoke": ChaosSettings(plans=("crash-billing", "crash-notify"), rate=20, warmup_s=0.5,
                           duration_s=3.5, users=4, quiet_s=0.5, time_scale=0.3, instances=1),
}
RECOVERY_MARGIN_S = 4.0  # load kept on after the last fault, to see the recovery


def scaled(plan: FaultPlan, settings: ChaosSettings) -> FaultPlan:
    """``plan`` with its times scaled and its instances set as ``settings`` say."""
    k = settings.time_scale
    return FaultPlan(plan.name, tuple(
        replace(f, at_s=f.at_s * k, for_s=f.for_s * k, every_s=f.every_s * k,
                repeat=settings.instances or f.repeat) for f in plan.faults))


def plans_of(settings: ChaosSettings) -> dict[str, FaultPlan]:
    """The settings' plans, scaled, by name (the rung labels). Raises PlanError."""
    return {plan.name: scaled(plan, settings) for plan in map(load_plan, settings.plans)}


class Chaos(Experiment):
    """Keyed writes and reads under load while a fault plan is applied to a supervised
    placement; every operation logged, and the consistency oracle's verdict per step."""

    name = "chaos"
    title = "Faults injected under load, and the consistency oracle"
    needs_own_processes = "it kills, pauses and restarts the placement's processes"
    needs_one_generator = ("the oracle reads every operation's log, which a Locust worker "
                           "keeps where it runs")
    # what chaos measures is whether anything was lost, and how long the faults took: a send
    # late by a few ms under a restart takes nothing from either (the generator's own limit,
    # 10 ms, still holds)
    max_lateness_p99_us = MAX_LATENESS_P99_US

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> ChaosSettings:
        chosen = replace(PROFILES[profile], **dict(overrides or {}))
        for plan in plans_of(chosen).values():  # a bad name or file fails here, up front
            if plan.last_end_s() + RECOVERY_MARGIN_S * chosen.time_scale > \
                    chosen.warmup_s + chosen.duration_s:
                raise ValueError(f"chaos: plan {plan.name!r} ends at {plan.last_end_s():.1f} s; "
                                 f"the step (warm-up + duration) must last until at least "
                                 f"{plan.last_end_s() + RECOVERY_MARGIN_S * chosen.time_scale:.1f} s")
        return chosen

    def rungs(self, settings: ChaosSettings) -> list[Rung]:
        return [Rung(name, float(settings.rate)) for name in plans_of(settings)]

    def placement(self, settings: ChaosSettings, topology: "Topology",
                  launch: "LaunchSettings") -> tuple["Topology", "LaunchSettings"]:
        """Supervised, with a fault proxy in front of each process a network fault targets
        (where it is called over a hop; the launcher leaves the public edge alone)."""
        targets = {f.target for plan in plans_of(settings).values() for f in plan.faults
                   if f.kind in NETWORK_KINDS}
        proxied = tuple(sorted({topology.process_of(t) for t in targets}))
        return topology, replace(launch, supervise=True, proxied=proxied)

    def prepare(self, session: RunSession, settings: ChaosSettings, placement: str) -> None:
        from bench.system.shopclient import funded_users  # asks the shop over HTTP
        users = funded_users(session.shop(self, placement).base_url, settings.users)
        session.state_of(self).setdefault("users", {})[placement] = users

    def before_trial(self, session: RunSession, settings: ChaosSettings, trial: int) -> None:
        from bench.system.shopclient import log_in
        state = session.state_of(self)
        state["tokens"] = {p: log_in(session.shop(self, p).base_url, users)
                           for p, users in state["users"].items()}

    def load(self, session: RunSession, settings: ChaosSettings, rung: Rung,
             placement: str) -> StepLoad:
        from bench.experiments.chaos.oracle import \
            snapshot  # asks the shop over HTTP, before the load
        state = session.state_of(self)
        shop = session.shop(self, placement)
        tokens = state["tokens"][placement]
        state["before"] = snapshot(shop.base_url, tokens)
        skus = min(200, session.launch.search.catalog_size)
        return StepLoad(SCENARIO, settings.warmup_s, settings.duration_s, session.arrival,
                        {"tokens": tokens, "skus": skus})

    @contextmanager
    def during(self, session: RunSession, settings: ChaosSettings, key: StepKey
               ) -> Iterator[None]:
        shop = session.shop(self, key.placement)
        raw = session.store.raw_dir(key.slug)
        plan = plans_of(settings)[key.rung]
        injector = FaultInjector(shop, plan, started=lambda: any(raw.glob("ops-*.jsonl")))
        restarts_before = len(shop.supervisor.restarts) if shop.supervisor else 0
        injector.start()
        try:
            yield
        finally:
            injector.heal()
            session.state_of(self)["applied"] = {
                "plan": plan.to_json(), "faults": [w.to_json() for w in injector.windows],
                "restarts": (len(shop.supervisor.restarts) - restarts_before
                             if shop.supervisor else 0)}

    def after_step(self, session: RunSession, settings: ChaosSettings, step: StepResult,
                   result: Any) -> None:
        from bench.experiments.chaos.oracle import check_step
        from bench.system.shopquery import notification_lag
        state = session.state_of(self)
        shop: RunningShop = session.shop(self, step.key.placement)
        applied = state.pop("applied", {})
        step.invalid_reasons[:] = [r for r in step.invalid_reasons
                                   if r.code not in EXPECTED_UNDER_FAULTS]
        time.sleep(settings.quiet_s)
        verdict = check_step(shop, session.store.dir / step.raw_dir,
                             state["tokens"][step.key.placement], state.pop("before"),
                             settings.settle_timeout_s)
        lag = notification_lag(shop, result.measure_start_s, result.measure_end_s,
                               settings.settle_timeout_s)
        lag_p99_ms = (lag.histogram.get_value_at_percentile(99) / 1000
                      if lag.histogram.get_total_count() else None)
        # steps.csv keeps flat figures; what the faults and the oracle say goes beside the log
        write_json_atomic(session.store.dir / step.raw_dir / DETAILS,
                          {**applied, "oracle": verdict.to_json(), "lag_p99_ms": lag_p99_ms})
        step.extra.update(restarts=applied.get("restarts", 0), oracle_ok=verdict.ok,
                          oracle_problems=len(verdict.problems), payments=lag.payments,
                          notifications=lag.histogram.get_total_count(), lag_p99_ms=lag_p99_ms)

    def analyse(self, run: "RunData", resamples: int, seed: int) -> Analysis:
        from bench.experiments.chaos.analysis import analyse_chaos
        return analyse_chaos(self, run)

    def report(self, run: "RunData", result: Mapping[str, Any], figures_dir: Path) -> list["Block"]:
        from bench.experiments.chaos.analysis import chaos_report
        return chaos_report(run, result, figures_dir)


EXPERIMENT = Chaos()
