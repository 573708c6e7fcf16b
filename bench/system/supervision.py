"""Supervision: a started topology survives the death of one of its servers.

A ``Supervisor`` watches every server of a ``RunningShop`` (a thread polling each process
group's leader every ``poll_s``). When one has exited it is started again, on the same port
(so its callers' URLs stay right), after a backoff: ``first_delay_s``, doubled for each
further death within ``stable_s`` of the last restart, at most ``max_delay_s``. Each death
and restart is logged and kept as a ``Restart``. ``hold(name, until)`` keeps a server down
until a time (a fault's downtime); ``give_up_after`` restarts in a row that never became
ready leave it dead, reported by ``RunningShop.dead()``.

Only processes this harness started are restarted, by the launcher's own ``restart``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Restart:
    """One death of a server and what followed; times in seconds since the epoch."""

    server: str
    died_at: float  # when the supervisor saw it gone
    exit_code: int | None
    restarted_at: float | None = None  # None: not (yet) restarted
    ready_at: float | None = None  # when its /readyz first answered 200 after the restart

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SupervisionSettings:
    poll_s: float = 0.05
    first_delay_s: float = 0.25
    max_delay_s: float = 10.0
    stable_s: float = 30.0  # alive this long after a restart: the next death starts over
    ready_timeout_s: float = 30.0
    give_up_after: int = 5  # restarts in a row that never became ready


class Supervisor:
    """Restarts the servers of a shop as they die. ``exited(name)``: the exit code if the
    server's process has exited, else None; ``restart(name)``: start it again (returns when
    started); ``ready(name)``: whether it answers /readyz."""

    def __init__(self, names: list[str], exited: Callable[[str], int | None],
                 restart: Callable[[str], None], ready: Callable[[str], bool],
                 settings: SupervisionSettings = SupervisionSettings(),
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.restarts: list[Restart] = []
        self.given_up: set[str] = set()
        self._names = list(names)
        self._exited, self._restart, self._ready = exited, restart, ready
        self._clock = clock
        self._held: dict[str, float] = {}
        self._delay = {name: settings.first_delay_s for name in names}
        self._failed_in_a_row = {name: 0 for name in names}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop restarting (before the shop is stopped, so nothing comes back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.ready_timeout_s + 5)

    def hold(self, name: str, until: float) -> None:
        """Keep ``name`` down, should it die, until ``until`` (epoch seconds; a time already
        past: restart it at once). A death while held is planned: no backoff follows it."""
        with self._lock:
            self._held[name] = until

    def release(self, name: str) -> None:
        with self._lock:
            self._held.pop(name, None)

    def restarts_of(self, name: str) -> list[Restart]:
        with self._lock:
            return [r for r in self.restarts if r.server == name]

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            for name in self._names:
                if name in self.given_up or self._stop.is_set():
                    continue
                code = self._exited(name)
                if code is not None:
                    self._revive(name, code)

    def _revive(self, name: str, code: int) -> None:
        record = Restart(name, self._clock(), code)
        with self._lock:
            self.restarts.append(record)
            planned = name in self._held
            held_until = self._held.get(name, 0.0)
            if planned:
                # a death held for (an injected crash): back when the hold ends, and it does
                # not count towards the backoff of a server that keeps dying by itself
                delay = 0.0
            else:
                last = [r for r in self.restarts[:-1] if r.server == name and r.restarted_at]
                if last and record.died_at - (last[-1].restarted_at or 0) > self.settings.stable_s:
                    self._delay[name] = self.settings.first_delay_s
                delay = self._delay[name]
                self._delay[name] = min(delay * 2, self.settings.max_delay_s)
        log.warning("supervisor: %s exited with code %s; restarting in %.2f s", name, code,
                    max(delay, held_until - self._clock()))
        while not self._stop.is_set():  # the backoff, and any hold (which may change meanwhile)
            with self._lock:
                held_until = self._held.get(name, 0.0)
            wait = max(record.died_at + delay, held_until) - self._clock()
            if wait <= 0:
                break
            self._stop.wait(min(wait, 0.05))
        if self._stop.is_set():
            return
        try:
            self._restart(name)
        except Exception:  # a failed start counts as a restart that never became ready
            log.exception("supervisor: could not restart %s", name)
            self._count_failure(name)
            return
        record.restarted_at = self._clock()
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._exited(name) is not None:
                break
            if self._ready(name):
                record.ready_at = self._clock()
                self._failed_in_a_row[name] = 0
                log.warning("supervisor: %s restarted and ready after %.2f s down", name,
                            record.ready_at - record.died_at)
                return
            self._stop.wait(0.02)
        self._count_failure(name)

    def _count_failure(self, name: str) -> None:
        self._failed_in_a_row[name] += 1
        if self._failed_in_a_row[name] >= self.settings.give_up_after:
            self.given_up.add(name)
            log.error("supervisor: %s did not come back after %d restarts; left down", name,
                      self._failed_in_a_row[name])
