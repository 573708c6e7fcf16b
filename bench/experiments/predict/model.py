"""The seam model: a placement's journey figures from the monolith's and the per-hop costs.

Pure arithmetic, no I/O. ``Calibration`` holds what one run measured (or the same with one
trial left out, for the interval); ``CallGraph`` says which component calls which per
request kind; ``predict`` prices a ``Topology`` with them:

- latency: each request kind's monolith latency distribution, shifted by what the topology
  adds to that kind: the gateway (when it has one) and every synchronous call between
  components that lands in different processes, each at the measured cost of one hop,
  stretched by 1/(1 - busy) (processor sharing: the seam's work waits for cores the whole
  placement keeps busy at the rate), plus the network model's round trip per crossing. The
  journey's p50 is the p50 of the shifted kinds mixed as the monolith served them (never an
  average of percentiles).
- CPU per request: the monolith's, plus the measured CPU of one HTTP hop (both ends) for
  every crossing a request makes on average, event deliveries included.
- memory: the monolith's, plus the measured memory of one more server per extra server.
- notification lag: the monolith's where billing and notify share a process and database
  (delivered in billing's transaction), the measured relay's where they do not.

What it cannot know (docs/predict.md): queueing near capacity (a shift is exact only while
queues stay short), contention between processes on a shared core, payloads unlike the
chain's, and a process's idle CPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.results.stats import percentile_of_counts
from shop.topology import Topology

GATEWAY = "gateway"


@dataclass(frozen=True)
class Call:
    """``per_request`` calls from ``caller`` (a component, or the gateway) to ``callee`` per
    request of a kind; ``event``: a delivery off the request's path (billing's outbox)."""

    caller: str
    callee: str
    per_request: float
    event: bool = False


CallGraph = Mapping[str, tuple[Call, ...]]  # request kind -> its calls


@dataclass(frozen=True)
class KindLatency:
    """One request kind in the monolith: µs per bucket and the requests in each."""

    values_us: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """What the model rests on, all from one run (or one with a trial left out)."""

    kinds: Mapping[str, KindLatency]  # the monolith's journey at one rate
    cpu_ms: float  # monolith CPU-ms per request
    memory_mib: float  # monolith memory (PSS), MiB
    hop_us: float  # one component call over HTTP less one by function call, µs
    gateway_us: float  # what the gateway adds to a request, µs (its hop included)
    hop_cpu_ms: float  # CPU-ms of one HTTP hop, both ends
    server_mib: float  # memory of one more server, MiB
    lag_direct_us: float | None  # notification lag p50, µs: delivered in billing's transaction
    lag_relay_us: float | None  # ... through the outbox and a relay hop
    rate: float = 0.0  # req/s the monolith's journey was measured at
    cores: int = 1  # the CPUs every process of a placement shares


@dataclass(frozen=True)
class NetworkModel:
    """Added per crossing: a round trip of ``rtt_ms`` plus ``jitter_ms`` (its mean), on every
    edge unless ``edges`` ("CALLER->CALLEE", processes of the topology or the gateway) says
    otherwise."""

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    edges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def added_us(self, caller: str, callee: str) -> float:
        rtt, jitter = self.edges.get(f"{caller}->{callee}", (self.rtt_ms, self.jitter_ms))
        return 1000.0 * (rtt + jitter)


@dataclass(frozen=True)
class KindShift:
    """What a topology adds to one request kind: µs of gateway, hops and network, and the
    HTTP hops it crosses (events included)."""

    gateway_us: float
    hops_us: float
    network_us: float
    crossings: float
    event_crossings: float

    @property
    def total_us(self) -> float:
        return self.gateway_us + self.hops_us + self.network_us


@dataclass(frozen=True)
class Prediction:
    p50_us: float  # inf: the placement's CPU would exceed its cores at the rate
    cpu_ms: float
    memory_mib: float
    lag_p50_us: float | None
    shifts: Mapping[str, KindShift]  # per request kind
    mix: Mapping[str, float]  # each kind's share of the requests
    busy: float = 0.0  # the share of its cores the placement keeps busy at the rate
    stretch: float = 1.0  # how much longer the seam's CPU-bound time is than when alone


def utilisation(rate: float, cpu_ms: float, cores: int) -> float:
    """The share of ``cores`` CPUs that ``rate`` req/s at ``cpu_ms`` CPU-ms each keep busy."""
    return rate * cpu_ms / 1000.0 / max(1, cores)


def servers_of(topology: Topology) -> int:
    """The servers a topology starts: each process's replicas, leaf servers, the gateway."""
    return (sum(topology.scale_of(p).replicas for p in topology.processes)
            + len(topology.leaf_servers()) + (1 if topology.gateway else 0))


def shift_of(calls: tuple[Call, ...], topology: Topology, calibration: Calibration,
             network: NetworkModel) -> KindShift:
    """What ``topology`` adds to a request with ``calls`` (component-level)."""
    gateway = hops = net = crossings = events = 0.0
    for call in calls:
        if call.caller == GATEWAY:
            if not topology.gateway:
                continue
            callee = topology.process_of(call.callee)
            gateway += call.per_request * calibration.gateway_us
            net += call.per_request * network.added_us(GATEWAY, callee)
            crossings += call.per_request
            continue
        caller, callee = topology.process_of(call.caller), topology.process_of(call.callee)
        if caller == callee:
            continue
        crossings += call.per_request
        if call.event:
            events += call.per_request
            continue
        hops += call.per_request * calibration.hop_us
        net += call.per_request * network.added_us(caller, callee)
    return KindShift(gateway, hops, net, crossings, events)


def mixture_percentile(parts: list[tuple[np.ndarray, np.ndarray]], q: float) -> float:
    """The q-th percentile (µs) of several (values, counts) distributions together, by
    HdrHistogram's rule: the first value where the cumulative count reaches round(q% n)."""
    if not parts:
        return float("nan")
    values = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    order = np.argsort(values, kind="stable")
    return float(percentile_of_counts(counts[order], values[order], q)[0])


def same_home(topology: Topology, a: str, b: str) -> bool:
    """Whether components ``a`` and ``b`` share a process and a database."""
    return (topology.process_of(a) == topology.process_of(b)
            and topology.databases.get(a) == topology.databases.get(b))


def predict(topology: Topology, calibration: Calibration, graph: CallGraph,
            network: NetworkModel = NetworkModel(), baseline_servers: int = 1) -> Prediction:
    """``topology``'s journey p50 (µs), CPU-ms per request, memory (MiB) and notification
    lag p50 (µs) at the rate ``calibration`` was measured at. ``baseline_servers``: the
    servers of the measured monolith. Raises KeyError for a request kind the graph lacks."""
    c = calibration
    kinds = c.kinds
    shifts = {kind: shift_of(graph[kind], topology, c, network) for kind in kinds}
    served = {kind: float(k.counts.sum()) for kind, k in kinds.items()}
    total = sum(served.values())
    mix = {kind: n / total for kind, n in served.items()} if total else {}
    crossings = sum(mix[kind] * shifts[kind].crossings for kind in mix)
    cpu = c.cpu_ms + crossings * c.hop_cpu_ms
    # The seam's costs were measured alone (one chain at a time), but in the journey its
    # CPU-bound work shares the placement's cores with every other request: under processor
    # sharing it takes 1/(1 - busy) as long. The monolith's latencies were measured at its
    # own load and are kept as they are; the network model's time is waiting, not CPU.
    busy = utilisation(c.rate, cpu, c.cores)
    stretch = 1.0 / (1.0 - busy) if busy < 1.0 else float("inf")
    p50 = (float("inf") if busy >= 1.0 else mixture_percentile(
        [(k.values_us + (shifts[kind].gateway_us + shifts[kind].hops_us) * stretch
          + shifts[kind].network_us, k.counts) for kind, k in kinds.items()], 50.0))
    extra_servers = servers_of(topology) - baseline_servers
    lag = (c.lag_direct_us if same_home(topology, "billing", "notify") else c.lag_relay_us)
    return Prediction(p50, cpu, c.memory_mib + extra_servers * c.server_mib, lag, shifts, mix,
                      busy, stretch)
