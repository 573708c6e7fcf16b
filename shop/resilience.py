"""What a hop does when its dependency fails: a circuit breaker, a bulkhead and a retry budget.

All three are one worker process's own state, shared by its threads: a gunicorn server with
W workers has W breakers per dependency, each opening on what *its* calls saw, so while the
dependency is down up to W half-open probes may reach it at once (one per worker), and
each worker's bulkhead bounds only its own threads. That is the usual meaning of
per-process resilience state (Hystrix, Finagle); nothing is shared through a database.

Why not pybreaker: its ``CircuitBreaker.call`` holds the breaker's lock for the whole
protected call (pybreaker 1.4.1, ``CircuitBreaker.call``: ``with self._lock: return
self.state.call(...)``; danielfm/pybreaker#3, PRs #41, #57 and #77 to remove it were
closed), so every hop of a worker's threads to one dependency would be serialized. The
breaker here takes its lock only to decide and to record. Why not fabfuel's circuitbreaker:
it takes no lock at all. Retries use tenacity (shop/hops.py).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

BreakerListener = Callable[[str, str], None]
"""Told of each state change of a breaker: (from, to)."""


@dataclass(frozen=True)
class Refusal:
    """A call refused before it was sent: why, and when to try again (seconds)."""

    reason: str  # "circuit open", "bulkhead full"
    retry_after_s: float


class CircuitBreaker:
    """Closed: calls pass, ``failures`` consecutive failures open it. Open: calls are refused
    for ``reset_s`` seconds. Half-open: one trial call passes (the others are refused); its
    success closes the breaker, its failure opens it again for another ``reset_s``.

    Only failures to get an answer count (no connection, a timeout, a reset); an answer,
    even a 5xx, is the dependency working: its error is the caller's to report."""

    def __init__(self, failures: int, reset_s: float, listener: BreakerListener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError("a breaker needs failures >= 1 and reset_s > 0")
        self.failures, self.reset_s = failures, reset_s
        self.state = CLOSED
        self._listener = listener
        self._clock = clock
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._lock = threading.Lock()

    def admit(self) -> Refusal | None:
        """Before a call: None to go ahead (then ``record`` its outcome), or why not."""
        if self.state == CLOSED:  # the healthy path takes no lock (a read is atomic)
            return None
        with self._lock:
            if self.state == CLOSED:
                return None
            left = self._opened_at + self.reset_s - self._clock()
            if self.state == OPEN and left <= 0:
                self._move(HALF_OPEN)
            if self.state == HALF_OPEN and not self._trial_out:
                self._trial_out = True
                return None
            return Refusal("circuit open", max(left, 0.0) if self.state == OPEN else self.reset_s)

    def record(self, ok: bool) -> None:
        """The outcome of an admitted call: ``ok`` if an answer came."""
        if ok and self.state == CLOSED and not self._consecutive:
            return  # nothing to change, and no lock taken on the healthy path
        with self._lock:
            if self.state == HALF_OPEN:
                self._trial_out = False
                self._consecutive = 0
                if ok:
                    self._move(CLOSED)
                else:
                    self._open()
                return
            if ok:
                self._consecutive = 0
                return
            self._consecutive += 1
            if self.state == CLOSED and self._consecutive >= self.failures:
                self._open()

    def cancel(self) -> None:
        """An admitted call was not made after all: a half-open breaker admits another trial."""
        with self._lock:
            self._trial_out = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(OPEN)

    def _move(self, to: str) -> None:
        before, self.state = self.state, to
        if self._listener is not None and before != to:
            self._listener(before, to)


class Bulkhead:
    """At most ``limit`` calls in flight to one dependency from this process, so one slow
    dependency holds at most ``limit`` of a worker's threads.

    A call that finds it full waits for a place up to ``wait_s``, but only while the
    dependency is healthy: places then free up within ms, and a burst is served rather than
    refused. Once its oldest call in flight has taken ``stall_s``, the dependency is stalled
    and a call finding the bulkhead full is refused at once: waiting would only hold another
    thread. (Measured: a fixed 20 ms wait made 8 clients racing through an 8-thread gateway
    get 503s from a healthy billing; a 250 ms wait with notify paused kept the gateway's
    other threads busy waiting, and search's p99 went to 259 ms.)"""

    def __init__(self, limit: int, wait_s: float, stall_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("a bulkhead needs a limit of at least 1")
        self.limit = limit
        self._wait_s, self._stall_s = wait_s, stall_s
        self._clock = clock
        # A counter under a plain lock: threading.Semaphore's Condition cost ~5 µs a call;
        # the Condition is only waited on when the bulkhead is full.
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._started: dict[int, float] = {}  # thread -> when its call began (one at a time)

    def enter(self) -> Refusal | None:
        """None with a place taken (``leave`` gives it back), or why not."""
        me = threading.get_ident()
        with self._lock:
            if len(self._started) < self.limit:
                self._started[me] = self._clock()
                return None
            oldest = min(self._started.values())
            stalled = self._clock() - oldest >= self._stall_s
            if not stalled and self._wait_s > 0:
                deadline = self._clock() + self._wait_s
                while len(self._started) >= self.limit:
                    left = deadline - self._clock()
                    if left <= 0 or not self._freed.wait(left):
                        break
                if len(self._started) < self.limit:
                    self._started[me] = self._clock()
                    return None
        return Refusal(f"bulkhead full ({self.limit} calls in flight"
                       f"{', stalled' if stalled else ''})", 1.0)

    def leave(self) -> None:
        with self._lock:
            self._started.pop(threading.get_ident(), None)
            self._freed.notify()


class RetryBudget:
    """Retries as a share of calls, as Finagle's RetryBudget: each call deposits ``share``
    of a retry, each retry withdraws one, and ``min_per_s`` retries a second are always
    allowed; at most ``ttl_s`` seconds' worth is kept. So retries add at most ``share`` to
    the load a failing dependency sees, however many callers retry."""

    def __init__(self, share: float, min_per_s: float = 10.0, ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.min_per_s = share, min_per_s
        self._cap = max(1.0, min_per_s * ttl_s)
        self._clock = clock
        self._tokens = float(min_per_s)  # a second's worth to start with
        self._at = clock()
        self._lock = threading.Lock()

    def deposit(self) -> None:
        with self._lock:
            self._tokens = min(self._cap, self._tokens + self.share)

    def withdraw(self) -> bool:
        """Take one retry; False when the budget is spent."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._cap, self._tokens + (now - self._at) * self.min_per_s)
            self._at = now
            if self._tokens < 1.0 - 1e-9:  # ten deposits of 0.1 make a retry
                return False
            self._tokens -= 1.0
            return True
