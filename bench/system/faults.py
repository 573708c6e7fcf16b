"""Fault injection: plans of faults, and an injector that applies them to a running shop
during a step and undoes every one of them afterwards.

A fault hits the server hosting a *component* (so "crash billing" kills the monolith in the
monolith: the blast radius is part of the comparison):

- ``crash``: SIGKILL the server's process group; the supervisor (bench/system/supervision.py) is
  held off for ``for_s`` seconds, then restarts it on its port;
- ``pause``: SIGSTOP the process group for ``for_s`` seconds, then SIGCONT (a stalled
  dependency: connections are accepted by the kernel, nothing answers);
- ``restart``: a planned rolling restart, an independent deploy: each server of the
  process in turn gets SIGTERM (gunicorn finishes what it is answering), is restarted at
  once by the supervisor and must answer again before the next one goes (``for_s``: the
  longest to wait for one); with one replica that is a short outage, with several none
  should be seen;
- on the way into the server, through its fault proxy (bench/system/faultproxy.py): ``latency``
  (``latency_ms`` ± ``jitter_ms`` per request), ``errors`` (a ``share`` of requests answered
  503 by the proxy), ``reset`` (connections reset), ``blackhole`` (nothing forwarded or
  answered). These make sense only where the component is called over a hop: in a
  placement where it is not (the monolith), the window is recorded as not applied.

A plan is a list of faults, each at ``at_s`` seconds after the step's schedule started,
optionally repeated ``repeat`` times every ``every_s`` seconds. Built-in plans are in
``PLANS``; a TOML file gives others (``load_plan``). Only processes the harness started are
signalled, by process group.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shop.textfile import TextFileError, read_text_file

if TYPE_CHECKING:
    from bench.system.launcher import RunningShop

log = logging.getLogger(__name__)

PROCESS_KINDS = ("crash", "pause", "restart")
NETWORK_KINDS = ("latency", "errors", "reset", "blackhole")
KINDS = PROCESS_KINDS + NETWORK_KINDS
TARGETS = ("auth", "billing", "search", "notify")


class PlanError(ValueError):
    """A fault plan that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    target: str  # a component: the fault hits the server hosting it
    at_s: float  # seconds after the schedule started
    for_s: float  # downtime (crash) or how long it lasts (pause)
    repeat: int = 1
    every_s: float = 0.0
    latency_ms: float = 0.0  # latency: added to each request, ± jitter_ms (uniform)
    jitter_ms: float = 0.0
    share: float = 0.0  # errors: the share of requests answered 503 by the proxy

    def times(self) -> list[float]:
        """When each instance starts, seconds after the schedule started."""
        return [self.at_s + i * self.every_s for i in range(self.repeat)]


@dataclass(frozen=True)
class FaultPlan:
    name: str
    faults: tuple[Fault, ...]

    def last_end_s(self) -> float:
        return max(t + f.for_s for f in self.faults for t in f.times())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "faults": [asdict(f) for f in self.faults]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FaultPlan":
        return cls(data["name"], tuple(Fault(**f) for f in data["faults"]))


NETWORK_PARAMS = {"latency": {"latency_ms": 200.0, "jitter_ms": 50.0}, "errors": {"share": 0.5}}


def _every(kind: str, target: str, times: int = 5, for_s: float = 2.0,
           every_s: float = 8.0, at_s: float = 6.0) -> FaultPlan:
    return FaultPlan(f"{kind}-{target}", (Fault(kind, target, at_s, for_s, times, every_s,
                                                **NETWORK_PARAMS.get(kind, {})),))


# Each fault kind against each dependency: five instances, 2 s each, 8 s apart; latency
# 200 ± 50 ms, errors on half the requests.
PLANS: dict[str, FaultPlan] = {plan.name: plan for plan in
                               (_every(kind, target) for kind in KINDS for target in TARGETS)}


def parse_plan(data: dict[str, Any], source: str) -> FaultPlan:
    """A plan document: ``name`` and ``[[fault]]`` tables of kind, target, at_s, for_s and
    optionally repeat and every_s. Raises PlanError naming ``source``."""
    def fail(why: str) -> PlanError:
        return PlanError(f"{source}: {why}")

    unknown = set(data) - {"name", "fault"}
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; expected name and [[fault]] tables")
    tables = data.get("fault")
    if not isinstance(tables, list) or not tables:
        raise fail("needs at least one [[fault]] table")
    faults = []
    for i, table in enumerate(tables, 1):
        if not isinstance(table, dict):
            raise fail(f"fault {i} must be a table")
        extra = set(table) - {"kind", "target", "at_s", "for_s", "repeat", "every_s",
                              "latency_ms", "jitter_ms", "share"}
        if extra:
            raise fail(f"fault {i}: unknown key(s) {sorted(extra)}")
        if table.get("kind") not in KINDS:
            raise fail(f"fault {i}: kind must be one of {', '.join(KINDS)}, not {table.get('kind')!r}")
        if table.get("target") not in TARGETS:
            raise fail(f"fault {i}: target must be one of {', '.join(TARGETS)}, "
                       f"not {table.get('target')!r}")
        numbers = {}
        for key, low, high in (("at_s", 0, 3600), ("for_s", 0.05, 600), ("every_s", 0, 3600),
                               ("latency_ms", 0, 60_000), ("jitter_ms", 0, 60_000),
                               ("share", 0, 1)):
            value = table.get(key, None if key in ("at_s", "for_s") else 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise fail(f"fault {i}: {key} must be a number from {low} to {high}, not {value!r}")
            numbers[key] = float(value)
        repeat = table.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
            raise fail(f"fault {i}: repeat must be a whole number from 1 to 100, not {repeat!r}")
        if repeat > 1 and numbers["every_s"] <= numbers["for_s"]:
            raise fail(f"fault {i}: every_s must exceed for_s, so instances do not overlap")
        if numbers["jitter_ms"] > numbers["latency_ms"]:
            raise fail(f"fault {i}: jitter_ms must not exceed latency_ms")
        faults.append(Fault(table["kind"], table["target"], numbers["at_s"], numbers["for_s"],
                            repeat, numbers["every_s"], numbers["latency_ms"],
                            numbers["jitter_ms"], numbers["share"]))
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise fail("name must be a non-empty string without '/'")
    return FaultPlan(name, tuple(faults))


def load_plan(name_or_path: str) -> FaultPlan:
    """A built-in plan by name, or a TOML plan file."""
    if name_or_path in PLANS:
        return PLANS[name_or_path]
    path = Path(name_or_path)
    if path.suffix != ".toml":
        raise PlanError(f"no fault plan {name_or_path!r}; built in: {', '.join(PLANS)} "
                        f"(or a path to a .toml file)")
    try:
        return parse_plan(tomllib.loads(read_text_file(path)), str(path))
    except TextFileError as exc:
        raise PlanError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from None


@dataclass
class FaultWindow:
    """One applied fault: epoch seconds it began and was undone (and, for a crash, when the
    restarted server answered again)."""

    kind: str
    target: str
    server: str
    start: float
    end: float | None = None
    back: float | None = None  # crash: the restarted server's first /healthz answer
    applied: bool = True  # False: the fault makes no sense here (no hop into the component)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultInjector:
    """Applies ``plan`` to ``shop`` from when ``started()`` first returns true (polled),
    in a thread of its own; ``heal()`` undoes whatever is still applied and waits (bounded)
    until every crashed server is back."""

    shop: RunningShop
    plan: FaultPlan
    started: Callable[[], bool] = lambda: True
    windows: list[FaultWindow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        if self.shop.supervisor is None and any(f.kind in ("crash", "restart")
                                                for f in self.plan.faults):
            raise RuntimeError("a crash or a restart needs a supervised shop "
                               "(LaunchSettings.supervise)")
        self._thread.start()

    def server_of(self, component: str) -> str:
        """The first server of the process hosting ``component``."""
        return self.shop.deployment.topology.process_of(component)

    def _run(self) -> None:
        while not self.started():
            if self._stop.wait(0.02):
                return
        t0 = time.time()
        schedule = sorted((t, fault) for fault in self.plan.faults for t in fault.times())
        for at, fault in schedule:
            if self._stop.wait(max(0.0, t0 + at - time.time())):
                return
            window = self._apply(fault)
            if self._stop.wait(max(0.0, window.start + fault.for_s - time.time())):
                return  # heal() undoes it
            self._undo(window)

    def _apply(self, fault: Fault) -> FaultWindow:
        server = self.server_of(fault.target)
        proc = self.shop.processes[server]
        proxy = self.shop.proxies.get(server)
        network = fault.kind in NETWORK_KINDS
        window = FaultWindow(fault.kind, fault.target, server, time.time(),
                             applied=proxy is not None or not network)
        with self._lock:
            self.windows.append(window)
        if not window.applied:
            log.warning("fault: %s %s does not apply: no hop into %s here", fault.kind,
                        fault.target, server)
            return window
        log.warning("fault: %s %s (%s) for %.1f s", fault.kind, fault.target, server, fault.for_s)
        if network:
            proxy.set(fault.kind, latency_ms=fault.latency_ms, jitter_ms=fault.jitter_ms,
                      share=fault.share)
        elif fault.kind == "crash":
            self.shop.supervisor.hold(server, window.start + fault.for_s)
            _signal(proc.pid, signal.SIGKILL)
        elif fault.kind == "restart":
            self._roll(server, fault.for_s)
            window.end = window.back = time.time()
        else:
            _signal(proc.pid, signal.SIGSTOP)
        return window

    def _roll(self, process: str, wait_s: float) -> None:
        """Restart each server of ``process`` in turn, the next once the last answers."""
        supervisor = self.shop.supervisor
        for proc in self.shop.replicas(process):
            before = len(supervisor.restarts_of(proc.name))
            supervisor.hold(proc.name, time.time())  # planned: back at once, no backoff
            _signal(proc.pid, signal.SIGTERM)
            # not cut short by heal(): a half-done deploy would leave a server down
            deadline = time.monotonic() + max(wait_s, 30.0)
            while time.monotonic() < deadline:
                done = supervisor.restarts_of(proc.name)[before:]
                if done and done[-1].ready_at:
                    break
                time.sleep(0.02)
            supervisor.release(proc.name)

    def _undo(self, window: FaultWindow) -> None:
        with self._lock:
            if window.end is not None:
                return
            window.end = time.time()
        if not window.applied:
            return
        if window.kind == "restart":
            return  # over when it was applied
        if window.kind in NETWORK_KINDS:
            self.shop.proxies[window.server].set("pass")
        elif window.kind == "crash":
            self.shop.supervisor.release(window.server)
        else:
            _signal(self.shop.processes[window.server].pid, signal.SIGCONT)

    def heal(self, timeout_s: float = 60.0) -> None:
        """Stop injecting, undo what is applied, and wait until every crashed server answers
        again (each crash window gets its ``back`` time)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)  # a rolling restart under way is finished first
        for window in list(self.windows):
            self._undo(window)
        deadline = time.monotonic() + timeout_s
        for window in self.windows:
            if window.kind != "crash" or not window.applied:
                continue
            while window.back is None and time.monotonic() < deadline:
                back = [r.ready_at for r in self.shop.supervisor.restarts_of(window.server)
                        if r.ready_at and r.died_at >= window.start - 1]
                if back:
                    window.back = min(back)
                else:
                    time.sleep(0.05)


def _signal(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # already gone: the supervisor brings it back
        pass
