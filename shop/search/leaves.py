"""Fan-out: the catalog split into S shards ("leaves"), R replicas of each, and the scatter.

A leaf owns 1/S of the catalog (products whose number is congruent to its shard modulo S)
in its own database, indexed like the whole catalog (BM25 scores are the leaf's own, as in
any partitioned index). ``GET /search/scatter?n=`` asks leaves 0..n-1 (one replica each)
concurrently and merges their best hits, so n = S searches everything.

Where the leaves live is placement: function calls in the process that scatters, or one
server per replica of each shard (``[leaves] processes = true``). Either way the scatter is
this module's ``Scatter`` over ``Leaf`` handles, with the same bounded pool of threads.

Latency injection, for measuring fan-out against theory, is a property of the deployment
(``LeafDelay``, named), chosen per request with a seed: the delay of a call to shard s,
replica r is a pure function of (seed, s, r), so every placement sees the same delays for
the same request sequence, and a backup to another replica draws its own.
"""
from __future__ import annotations

import contextvars
import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from shop.errors import InvalidValue
from shop.search.api import Hit
from shop.search.hedging import HedgeDelay
from shop.search.service import (SCHEMA, SearchSettings, check_limit, match_expression, ranked,
                                 seed_catalog)
from shop.storage import Database

MAX_SHARDS, MAX_REPLICAS = 64, 4
MAX_HEDGE_MS = 10_000.0
MAX_SEED = 2**63 - 1
SCATTER_THREADS = 64  # leaf calls in flight per scattering worker process, all requests together


@dataclass(frozen=True)
class LeafDelay:
    """Injected latency of one leaf call, in ms: ``base_ms`` always (or, with ``base_sigma``,
    a lognormal with median ``base_ms`` and that standard deviation of its logarithm), plus
    ``slow_ms`` with probability ``slow_p``; the slow part only on the replicas in
    ``slow_replicas`` (every replica when empty), so "one slow replica" is
    ``slow_replicas=(0,)``."""

    base_ms: float = 1.0
    slow_p: float = 0.0
    slow_ms: float = 0.0
    slow_replicas: tuple[int, ...] = ()
    base_sigma: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.base_ms <= 1000 and 0 <= self.slow_ms <= 1000 and 0 <= self.slow_p <= 1
                and 0 <= self.base_sigma <= 3):
            raise ValueError("a LeafDelay needs 0 <= base_ms, slow_ms <= 1000, 0 <= slow_p <= 1 "
                             "and 0 <= base_sigma <= 3")
        object.__setattr__(self, "slow_replicas", tuple(self.slow_replicas))  # from JSON lists

    def is_slow(self, seed: int, shard: int, replica: int) -> bool:
        if self.slow_replicas and replica not in self.slow_replicas:
            return False
        return draw(seed, shard, replica) < self.slow_p

    def delay_ms(self, seed: int, shard: int, replica: int) -> float:
        base = self.base_ms
        if self.base_sigma:
            u = min(max(draw(seed, shard, replica, "base"), 1e-12), 1 - 1e-12)
            base *= math.exp(self.base_sigma * NORMAL.inv_cdf(u))
        return base + (self.slow_ms if self.is_slow(seed, shard, replica) else 0.0)


NORMAL = NormalDist()


def draw(seed: int, shard: int, replica: int, purpose: str = "") -> float:
    """A uniform number in [0, 1) that depends only on its arguments (the same in every
    process and placement). ``replica = -1`` is the draw of which replica is the primary;
    ``purpose`` keeps independent draws for the same call apart."""
    key = f"{seed}/{shard}/{replica}/{purpose}" if purpose else f"{seed}/{shard}/{replica}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def shard_of(sku_number: int, shards: int) -> int:
    """The shard owning product number ``sku_number`` (``SKU-000001`` is 1)."""
    return (sku_number - 1) % shards


def seed_partition(db: Database, settings: SearchSettings, shard: int, shards: int) -> None:
    """Fill ``db`` with shard ``shard`` of ``shards`` of the catalog (idempotent)."""
    db.apply_schema(SCHEMA)
    seed_catalog(db, settings, lambda number: shard_of(number, shards) == shard,
                 part=f"{shard}/{shards}")


def check_fanout(n: int, shards: int) -> None:
    if not 1 <= n <= shards:
        raise InvalidValue(f"n must be between 1 and {shards} (the number of shards)")


class Leaf(Protocol):
    def query(self, q: str, limit: int, delay: str | None = None,
              seed: int | None = None) -> list[Hit]:
        """The best ``limit`` hits for ``q`` in this leaf's shard, after the injected delay
        named ``delay`` drawn with ``seed`` (no delay when either is None). Raises
        InvalidValue (bad query, limit, or a delay the deployment does not define)."""


class LeafService:
    """The local implementation of ``Leaf``: one replica of one shard. Replicas of a shard
    share its database; they differ only in the delays drawn for them."""

    def __init__(self, db: Database, shard: int, replica: int,
                 delays: Mapping[str, LeafDelay] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._db = db
        self.shard, self.replica = shard, replica
        self._delays = dict(delays or {})
        self._sleep = sleep

    def query(self, q: str, limit: int, delay: str | None = None,
              seed: int | None = None) -> list[Hit]:
        check_limit(limit)
        match = match_expression(q)
        if delay is not None and seed is not None:
            self._sleep(delay_of(self._delays, delay).delay_ms(seed, self.shard, self.replica) / 1000)
        return ranked(self._db, match, limit)


def delay_of(delays: Mapping[str, LeafDelay], name: str) -> LeafDelay:
    try:
        return delays[name]
    except KeyError:
        known = ", ".join(sorted(delays)) or "none"
        raise InvalidValue(f"no injected delay {name!r} in this deployment (defined: {known})") from None


@dataclass(frozen=True)
class Scattered:
    hits: list[Hit]
    backups: int  # hedge calls sent (0 without hedging)
    # per shard asked, µs from the moment the scatter asked its leaves until that shard's
    # answer (the first, if hedged) was in: a wait in the bounded pool, the hop and the
    # leaf's work. Their maximum is the scatter's own wait (F(t)^n's "slowest of n").
    leaf_us: tuple[int, ...] = ()
    # per shard asked, µs of that answer's call spent waiting for a thread of the pool, which
    # every request of the worker shares: what other requests' leaves cost this one
    wait_us: tuple[int, ...] = ()
    # hedged, and a primary still out at hedge_ms: how long after hedge_ms the scatter
    # looked for those (µs); None when every primary had answered by then
    hedge_late_us: int | None = None
    hedge_ms: float | None = None  # the delay the hedge waited (ms), given or tracked


ScatterObserver = Callable[[int, int, bool], None]
"""Told after each scatter: leaf calls sent as primaries, backups sent, whether hedged."""


class Scatter:
    """Scatter a query to n shards concurrently and gather the best hits.

    ``leaves[s][r]`` is replica r of shard s: a ``LeafService`` (a function call) or a client
    stub (a hop). Every leaf call, backups included, runs on one pool of ``threads`` threads
    shared by all requests of this worker process: latency is the slowest leaf's, plus any
    wait for a free thread when scatters overlap (bounded concurrency, in every placement).

    The primary replica of each shard is drawn from the request's seed (the same in every
    placement), else taken round-robin. With ``hedge_ms``, a shard whose primary has not
    answered ``hedge_ms`` after the leaves were asked gets one backup call to the next
    replica; the first answer wins and the other is ignored (its thread finishes it). With
    ``hedge_share``, the delay is this process's ``HedgeDelay`` for that share and n (the one
    after which about that share of primaries are still out), at most ``hedge_ms`` if given.
    """

    def __init__(self, leaves: Sequence[Sequence[Leaf]], threads: int = SCATTER_THREADS,
                 observer: ScatterObserver | None = None) -> None:
        if not leaves or any(not replicas for replicas in leaves):
            raise ValueError("a Scatter needs at least one replica of each shard")
        self.leaves = [list(replicas) for replicas in leaves]
        self.observer = observer
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="scatter")
        # Set by a traced process: each leaf call runs in a copy of the caller's context (its
        # current span), which an untraced scatter does not pay for.
        self.carry_context = False
        self._turn = 0
        self._lock = threading.Lock()
        self._hedges: dict[tuple[float, int], HedgeDelay] = {}

    @property
    def shards(self) -> int:
        return len(self.leaves)

    def scatter(self, q: str, n: int, limit: int = 10, *, hedge_ms: float | None = None,
                hedge_share: float | None = None, delay: str | None = None,
                seed: int | None = None) -> Scattered:
        check_fanout(n, self.shards)
        check_limit(limit)
        match_expression(q)  # refuse bad input before fanning out
        if hedge_ms is not None and not 0 < hedge_ms <= MAX_HEDGE_MS:
            raise InvalidValue(f"hedge_ms must be over 0 and at most {MAX_HEDGE_MS:g}")
        tracked = None
        if hedge_share is not None:  # hedge_ms, if given too, caps the tracked delay
            tracked = self._hedge_delay(hedge_share, n)
            hedge_ms = min(tracked.current_ms(), hedge_ms or MAX_HEDGE_MS)
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise InvalidValue(f"seed must be between 0 and {MAX_SEED}")
        if delay is not None and seed is None:
            seed = 0  # the injection's draws need a seed; a request that gives none gets 0
        primary = [self._primary(s, seed) for s in range(n)]
        asked_ns = time.perf_counter_ns()
        calls: list[list[Future]] = [[self._ask(s, primary[s], q, limit, delay, seed)]
                                     for s in range(n)]
        backups = 0
        hedge_late_us = None
        if hedge_ms is not None:
            # hedge_ms after the leaves were asked, on the clock leaf_us is read on: asking
            # n of them takes a while, and a timer started after that would hedge late
            left_s = hedge_ms / 1000 - (time.perf_counter_ns() - asked_ns) / 1e9
            _, out = wait([c[0] for c in calls], timeout=max(0.0, left_s))
            if out:  # how long after its delay the hedge looked (µs): the thread that looks
                # must get the interpreter lock back from the leaves' threads first
                hedge_late_us = max(0, (time.perf_counter_ns() - asked_ns) // 1000
                                    - int(hedge_ms * 1000))
            if tracked is not None:
                tracked.looked(len(out) / n)
            for s, pending in enumerate(calls):
                replicas = len(self.leaves[s])
                if replicas > 1 and not pending[0].done():
                    pending.append(self._ask(s, (primary[s] + 1) % replicas, q, limit, delay, seed))
                    backups += 1
        answers = [first_answer(pending) for pending in calls]
        if self.observer is not None:
            self.observer(n, backups, hedge_ms is not None)
        hits = [hit for answer in answers for hit in answer.hits]
        return Scattered(sorted(hits, key=lambda h: (-h.score, h.sku))[:limit], backups,
                         tuple(max(1, (a.done_ns - asked_ns) // 1000) for a in answers),
                         tuple(max(0, (a.started_ns - a.submitted_ns) // 1000) for a in answers),
                         hedge_late_us, hedge_ms)

    def _hedge_delay(self, share: float, n: int) -> HedgeDelay:
        with self._lock:  # made once per class, not once per request
            tracked = self._hedges.get((share, n))
            if tracked is None:
                tracked = self._hedges[share, n] = HedgeDelay(share)  # checks the share
            return tracked

    def _primary(self, shard: int, seed: int | None) -> int:
        replicas = len(self.leaves[shard])
        if seed is not None:
            return int(draw(seed, shard, -1) * replicas)
        with self._lock:
            self._turn += 1
            return self._turn % replicas

    def _ask(self, shard: int, replica: int, q: str, limit: int, delay: str | None,
             seed: int | None) -> Future:
        leaf = self.leaves[shard][replica].query
        if self.carry_context:  # a traced request's leaf calls join its trace
            return self._pool.submit(contextvars.copy_context().run, timed,
                                     time.perf_counter_ns(), leaf, q, limit, delay, seed)
        return self._pool.submit(timed, time.perf_counter_ns(), leaf, q, limit, delay, seed)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Answer:
    """One leaf call's hits and its ``perf_counter_ns`` times: handed to the pool, begun on
    a pool thread, returned (taken on that thread: a gathering thread woken later would add
    its own wake-up to the leaf)."""

    hits: list[Hit]
    submitted_ns: int
    started_ns: int
    done_ns: int


def timed(submitted_ns: int, query: Callable[..., list[Hit]], *args: object) -> Answer:
    """``query(*args)`` on a pool thread, timed."""
    started_ns = time.perf_counter_ns()
    hits = query(*args)
    return Answer(hits, submitted_ns, started_ns, time.perf_counter_ns())


def first_answer(calls: list[Future]) -> Answer:
    """The answer of whichever call answers first (``timed``); a failure counts only if
    every call fails (then the first call's error is raised)."""
    pending = set(calls)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for call in done:
            if call.exception() is None:
                return call.result()
    return calls[0].result()
