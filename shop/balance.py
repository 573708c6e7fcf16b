"""Calls to a process that runs as several replicas: one ``HopClient`` per replica, balanced.

``hop_for`` gives a plain ``HopClient`` when a process has one replica, so the hop the
benchmark measures stays exactly what it was; only a replicated process gets a
``ReplicaSet``, which offers the same surface (``call``, ``send``, ``close``, ``name``,
``base_url``, ``observer``, ``tracer``) and puts each call on one replica:

- the replica with the fewest calls outstanding from this worker process, ties broken
  round-robin (so one-at-a-time traffic still spreads over all replicas);
- a replica that refuses the connection is skipped for that call (the next one is tried)
  and set aside for ``cooldown_s`` (until it answers a call again); while every replica is
  set aside they are tried anyway, the one set aside longest first, so a set that is all
  down recovers on its first call after a restart. A call every replica refused raises
  ``Unavailable`` naming the process, not an address.

Only a refusal moves a call: the request never left, so sending it elsewhere is safe even
when it is not idempotent. Every other failure (a timeout, a connection dropped mid-call)
is the caller's, as with one ``HopClient``: the replica may have acted on the request.

The state (outstanding counts, set-aside times, ``errors``) is this worker process's own:
each gunicorn worker balances by what it alone has in flight.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shop.errors import Unavailable
from shop.hops import HopClient, HopResponse, HopSettings

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from shop.hops import HopObserver, ResilienceObserver

COOLDOWN_S = 1.0  # how long a replica that refused a connection is passed over
T = TypeVar("T")


def hop_for(urls: Sequence[str], credential: str, settings: HopSettings, name: str,
            observer: HopObserver | None = None, threads: int = 8,
            tracer: Tracer | None = None) -> HopClient | ReplicaSet:
    """The hop to a process at ``urls`` (one base URL per replica): a ``HopClient`` for
    one, a ``ReplicaSet`` for several. ``observer`` (a ``HopObserver``) is told of every
    request sent to any replica, under the one ``name``; ``threads``: the caller's threads
    per worker (each replica's bulkhead is a share of them); ``tracer``: every request is a
    CLIENT span of it (shop/tracing.py), None for none."""
    hops = [HopClient(url, credential, settings, name=name, threads=threads) for url in urls]
    if not hops:
        raise ValueError(f"no URL for {name!r}")
    hop: HopClient | ReplicaSet = hops[0] if len(hops) == 1 else ReplicaSet(hops, name)
    if observer is not None:
        hop.observer = observer
    if tracer is not None:
        hop.tracer = tracer
    return hop


def hop_events(hop: HopClient | ReplicaSet, observer: ResilienceObserver) -> None:
    """Tell ``observer`` of the resilience events of ``hop`` (of each replica's, for a set)."""
    for client in getattr(hop, "replicas", (hop,)):
        client.on_event = observer


def refused(exc: Unavailable) -> bool:
    """Whether ``exc`` (from a ``HopClient``) says the destination refused the connection.

    HopClient raises Unavailable *from* the socket error. A ConnectionRefusedError there
    means either the first connect was refused (nothing was sent) or, after a keep-alive
    connection dropped under an idempotent call, its one retry's connect was (the call is
    safe to repeat): either way the call may go to another replica."""
    return exc.never_sent or isinstance(exc.__cause__, ConnectionRefusedError)


class ReplicaSet:
    """The replicas of one process behind the ``HopClient`` surface; thread-safe.

    ``errors[i]`` counts the calls replica ``i`` failed with Unavailable (refusals
    included); ``outstanding(i)`` is how many calls it has in flight from this process.
    """

    def __init__(self, hops: Sequence[HopClient], name: str, cooldown_s: float = COOLDOWN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not hops:
            raise ValueError("a ReplicaSet needs at least one replica")
        self.name = name  # said in errors, as a HopClient's is
        self.replicas: tuple[HopClient, ...] = tuple(hops)
        self.base_url = self.replicas[0].base_url  # the first replica's, for messages
        self.errors = [0] * len(self.replicas)
        self._observer: HopObserver | None = None
        self._tracer: Tracer | None = None
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._outstanding = [0] * len(self.replicas)
        self._set_aside_until = [0.0] * len(self.replicas)  # clock seconds
        self._next = 0  # where the round-robin scan for a tie starts
        self._lock = threading.Lock()

    @property
    def observer(self) -> HopObserver | None:
        return self._observer

    @observer.setter
    def observer(self, observer: HopObserver | None) -> None:
        """Set on every replica's HopClient: each request is observed where it is sent."""
        self._observer = observer
        for hop in self.replicas:
            hop.observer = observer

    @property
    def tracer(self) -> Tracer | None:
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: Tracer | None) -> None:
        """Set on every replica's HopClient: each request is a span where it is sent."""
        self._tracer = tracer
        for hop in self.replicas:
            hop.tracer = tracer

    def outstanding(self, index: int) -> int:
        return self._outstanding[index]

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """``HopClient.call`` on the chosen replica."""
        return self._balanced(lambda hop: hop.call(path, body, idempotent=idempotent))

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str], *,
             idempotent: bool) -> HopResponse:
        """``HopClient.send`` on the chosen replica."""
        return self._balanced(lambda hop: hop.send(method, path, body, headers,
                                                   idempotent=idempotent))

    def close(self) -> None:
        for hop in self.replicas:
            hop.close()

    def _balanced(self, attempt: Callable[[HopClient], T]) -> T:
        tried: set[int] = set()
        while (index := self._choose(tried)) is not None:
            failed = was_refused = False
            try:
                return attempt(self.replicas[index])
            except Unavailable as exc:
                failed, was_refused = True, refused(exc)
                if not was_refused:
                    raise
                tried.add(index)  # refused: on to the next replica, this one set aside
            finally:
                self._finished(index, failed, was_refused)
        raise Unavailable(f"{self.name} is unavailable: all {len(self.replicas)} replicas "
                          f"refused the connection")

    def _choose(self, tried: set[int]) -> int | None:
        """The replica for the next attempt (counted as outstanding), or None when every
        replica has been tried for this call."""
        with self._lock:
            now = self._clock()
            count = len(self.replicas)
            best = aside = None
            for step in range(count):
                i = (self._next + step) % count
                if i in tried:
                    continue
                if self._set_aside_until[i] > now:
                    if aside is None or self._set_aside_until[i] < self._set_aside_until[aside]:
                        aside = i
                elif best is None or self._outstanding[i] < self._outstanding[best]:
                    best = i  # strictly fewer: among equals the first after the last chosen
            chosen = best if best is not None else aside
            if chosen is not None:
                self._next = (chosen + 1) % count
                self._outstanding[chosen] += 1
            return chosen

    def _finished(self, index: int, failed: bool, was_refused: bool) -> None:
        with self._lock:
            self._outstanding[index] -= 1
            if failed:
                self.errors[index] += 1
            if was_refused:
                self._set_aside_until[index] = self._clock() + self._cooldown_s
            elif not failed:  # it answered: back in the rotation, whatever the cool-down said
                self._set_aside_until[index] = 0.0
