"""Topologies: which process hosts which component, each component's database, and the
leaves of the fan-out, as data read from ``shop/topologies/*.toml`` and checked (``TopologyError``
names the file and the problem). ``shop.placement`` turns a topology into processes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from shop.chain.service import chain_path
from shop.errors import InvalidValue
from shop.hops import EDGE_FIELDS
from shop.search.leaves import MAX_REPLICAS, MAX_SHARDS
from shop.storage import check_url
from shop.textfile import TextFileError, read_text_file

COMPONENTS = ("auth", "billing", "search", "notify")
# What a public request to a component calls, one after another: every one verifies its token
# with auth; a checkout also prices its items with search (its event goes by the outbox,
# after the response, so notify is not on its path).
REQUEST_CALLS = {"auth": (), "billing": ("auth", "search"), "search": ("auth",),
                 "notify": ("auth",)}
GATEWAY = "gateway"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
BUILT_IN = "topologies"  # package data of shop: the topologies a name refers to


HTTP_EVENTS = "http"
RUN_PLACEHOLDER = "{run}"


def run_tag(data_dir: str | Path) -> str:
    """A short name of a data dir, the same for every process of one deployment."""
    return "r" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]


class TopologyError(ValueError):
    """A topology file that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class ProcessScale:
    """How one process of a topology is run. None: the launch's setting for every process
    (``seambench up --workers/--threads``, ``LaunchSettings``)."""

    workers: int | None = None  # gunicorn worker processes of each replica
    threads: int | None = None  # gthread threads per worker
    replicas: int = 1  # processes hosting the same components; their callers balance over them
    # Kubernetes quantities each replica's pod requests and is limited to (bench/deploy):
    # CPU in cores or millicores ("2", "500m"), memory in bytes ("256Mi"). None: not set.
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class LeafPlan:
    """The leaves ``/search/scatter`` fans out to (shop/search/leaves.py): the catalog in
    ``shards`` parts, ``replicas`` copies of each. With ``processes`` every copy is a server
    of its own (``leaf.S.R``, ``threads`` gthread threads, one worker) and the gateway
    scatters to them; without, the leaves are function calls in the process hosting search."""

    shards: int = 32
    replicas: int = 2
    processes: bool = False
    threads: int = 4
    cpu: str | None = None  # each leaf server's pod, deployed: as ProcessScale's
    memory: str | None = None


LEAF_EDGE = "leaf"  # the callee name of the scatter's leaf calls in [edge] tables
LEAF_PREFIX = "leaf."  # a leaf server's name: no process name has a dot


def leaf_server(shard: int, replica: int) -> str:
    return f"{LEAF_PREFIX}{shard}.{replica}"


def leaf_of(server: str) -> tuple[int, int] | None:
    """(shard, replica) of a leaf server's name, None for any other name."""
    if not server.startswith(LEAF_PREFIX):
        return None
    shard, _, replica = server[len(LEAF_PREFIX):].partition(".")
    return int(shard), int(replica)


# What a [process.NAME] table may set besides components, and the largest value of each.
SCALE_LIMITS = {"workers": 64, "threads": 256, "replicas": 16}
# What a [process.NAME] or [leaves] table may give a deployed server's pod (Kubernetes
# resource quantities, bench/deploy/kubernetes.py): an example, and the form of a value.
QUANTITIES = {"cpu": ('"500m" or "2"', re.compile(r"[1-9][0-9]*m|[0-9]+(\.[0-9]{1,3})?")),
              "memory": ('"256Mi" or "1Gi"', re.compile(r"[1-9][0-9]*(Ki|Mi|Gi|Ti|k|M|G|T)?"))}


@dataclass(frozen=True)
class Topology:
    name: str
    processes: dict[str, tuple[str, ...]]  # process name -> the components it hosts
    databases: dict[str, str]  # component -> database name (a file in the data dir) or URL
    gateway: bool  # a gateway process routes the public API to the owners
    shard_calls: str = "local"  # "http": the gateway scatters, each shard call a real hop
    events: str = HTTP_EVENTS  # how billing's events reach notify apart: "http" or an amqp:// URL
    scale: dict[str, ProcessScale] = field(default_factory=dict)  # only processes that set one
    leaves: LeafPlan = LeafPlan()
    # "CALLER->CALLEE" (either may be "*") -> HopSettings fields it sets (shop/hops.py)
    edges: dict[str, dict[str, float]] = field(default_factory=dict)

    def process_of(self, component: str) -> str:
        return next(p for p, hosted in self.processes.items() if component in hosted)

    def scale_of(self, process: str) -> ProcessScale:
        return self.scale.get(process, ProcessScale())

    def database_url(self, component: str, data_dir: str | Path) -> str:
        """A plain name is a SQLite file in the data dir; a URL may say ``{run}``, replaced
        by a tag of the data dir, so every run (or ``seambench up``) has its own databases."""
        name = self.databases[component]
        if "://" not in name:
            return f"sqlite:///{Path(data_dir).resolve() / name}.db"
        return name.replace(RUN_PLACEHOLDER, run_tag(data_dir))

    def event_queue(self, data_dir: str | Path) -> str:
        """The broker queue of this deployment's PaymentCaptured events (amqp events only)."""
        return f"seambench.{run_tag(data_dir)}.payment-captured"

    def extras(self) -> list[str]:
        """The optional parts of seambench this topology needs (pyproject's extras):
        ``postgres`` for a postgresql:// database, ``rabbitmq`` for amqp:// events."""
        needs = []
        if any(url.startswith(("postgresql://", "postgres://")) for url in self.databases.values()):
            needs.append("postgres")
        if self.events != HTTP_EVENTS:
            needs.append("rabbitmq")
        return needs

    def leaf_servers(self) -> list[str]:
        """The names of the leaf servers, shard by shard (none unless leaves are processes)."""
        if not self.leaves.processes:
            return []
        return [leaf_server(s, r) for s in range(self.leaves.shards)
                for r in range(self.leaves.replicas)]

    def downstream(self, process: str) -> list[str]:
        """The other processes a public request to ``process`` may call, one after another
        (``REQUEST_CALLS`` of the components it hosts, those it hosts itself left out)."""
        hosted = self.processes[process]
        return list(dict.fromkeys(self.process_of(c) for comp in hosted
                                  for c in REQUEST_CALLS[comp] if c not in hosted))

    def edge(self) -> str:
        """The process that serves the public API."""
        return GATEWAY if self.gateway else next(iter(self.processes))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Topology":
        """The inverse of ``dataclasses.asdict`` (after a JSON round trip, which turns the
        processes' tuples into lists). Not a validator: use ``parse_topology`` for files.
        A dict written before processes had a scale has none."""
        return cls(**{**data, "processes": {p: tuple(c) for p, c in data["processes"].items()},
                      "scale": {p: ProcessScale(**s) for p, s in data.get("scale", {}).items()},
                      "leaves": LeafPlan(**data.get("leaves", {}))})


def chain_http_hops(topology: Topology, k: int) -> int:
    """How many HTTP hops ``GET /chain?k=`` crosses in ``topology``: one per step of the ring
    between components of different processes, plus the gateway's hop to the process where
    the chain starts. The request to the public address itself is not counted (so the
    monolith's is 0 for every k). Raises InvalidValue for a k outside 0..MAX_HOPS."""
    path = chain_path(k)
    owner = topology.process_of
    crossings = sum(owner(a) != owner(b) for a, b in zip(path, path[1:]))
    return crossings + (1 if topology.gateway else 0)


def parse_topology(data: dict[str, Any], source: str) -> Topology:
    """Validate a topology document. Raises TopologyError naming ``source``."""
    def fail(why: str) -> TopologyError:
        return TopologyError(f"{source}: {why}")

    unknown = set(data) - {"name", "gateway", "process", "database", "shard_calls", "events",
                           "leaves", "edge"}
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; "
                   f"expected name, gateway, shard_calls, events, leaves, edge, process, database")
    name = data.get("name", Path(source).stem)
    procs = data.get("process")
    if not isinstance(procs, dict) or not procs:
        raise fail("needs at least one [process.NAME] table with components = [...]")
    processes: dict[str, tuple[str, ...]] = {}
    scale: dict[str, ProcessScale] = {}
    seen: dict[str, str] = {}
    for proc, table in procs.items():
        if not NAME.fullmatch(proc) or proc == GATEWAY:
            raise fail(f"bad process name {proc!r} (lowercase letters, digits, '-', '_'; "
                       f"not {GATEWAY!r})")
        comps = table.get("components") if isinstance(table, dict) else None
        if not isinstance(comps, list) or not comps:
            raise fail(f"process {proc!r} needs a non-empty components = [...] list")
        for comp in comps:
            if comp not in COMPONENTS:
                raise fail(f"process {proc!r}: unknown component {comp!r}; "
                           f"known: {', '.join(COMPONENTS)}")
            if comp in seen:
                raise fail(f"component {comp!r} is in both {seen[comp]!r} and {proc!r}")
            seen[comp] = proc
        processes[proc] = tuple(comps)
        if set(table) != {"components"}:
            scale[proc] = parse_scale(table, proc, fail)
    missing = [c for c in COMPONENTS if c not in seen]
    if missing:
        raise fail(f"component(s) {missing} are in no process")
    gateway = data.get("gateway", len(processes) > 1)
    if not isinstance(gateway, bool):
        raise fail("gateway must be true or false")
    if len(processes) > 1 and not gateway:
        raise fail("more than one process needs gateway = true to serve the public API")
    replicated = [p for p, s in scale.items() if s.replicas > 1]
    if replicated and not gateway:
        # Without a gateway the one process is the public address, and nothing balances.
        raise fail(f"process {replicated[0]!r}: replicas need gateway = true (the gateway "
                   f"balances the public API over them)")
    dbs = data.get("database", {})
    if not isinstance(dbs, dict) or not all(isinstance(v, str) and v for v in dbs.values()):
        raise fail("[database] maps components to database names or URLs (strings)")
    if set(dbs) - set(COMPONENTS):
        raise fail(f"[database] names unknown component(s) {sorted(set(dbs) - set(COMPONENTS))}")
    databases = {c: dbs.get(c, c) for c in COMPONENTS}
    for comp, db in databases.items():
        if "://" not in db and not NAME.fullmatch(db):
            raise fail(f"[database] {comp} = {db!r}: use a plain name, a sqlite:/// URL "
                       f"or a postgresql:// URL")
        if "://" in db:
            try:
                check_url(db.replace(RUN_PLACEHOLDER, run_tag(".")))
            except InvalidValue as exc:
                raise fail(f"[database] {comp}: {exc.detail}") from None
    if not databases["search"].startswith("sqlite:") and "://" in databases["search"]:
        # The catalog is a full-text index (FTS5) whose ranking is part of the contract.
        raise fail("[database] search must be SQLite (a plain name or sqlite:///): the "
                   "catalog is an FTS5 index; PostgreSQL's text search ranks differently")
    shard_calls = data.get("shard_calls", "http" if gateway else "local")
    if shard_calls not in ("local", "http"):
        raise fail(f"shard_calls must be \"local\" or \"http\", not {shard_calls!r}")
    if shard_calls == "http" and not gateway:
        # The scatter must not call its own process: its threads would wait on requests
        # queued behind them. Split, the gateway scatters to the search process.
        raise fail("shard_calls = \"http\" needs gateway = true (the gateway scatters)")
    events = data.get("events", HTTP_EVENTS)
    if not isinstance(events, str) or not (events == HTTP_EVENTS or events.startswith("amqp://")):
        raise fail(f"events must be \"http\" (the outbox relay posts to notify) or an "
                   f"amqp://USER:PASS@HOST:PORT/VHOST URL, not {events!r}")
    leaves = parse_leaves(data.get("leaves", {}), fail)
    if leaves.processes and shard_calls != "http":
        raise fail("[leaves] processes = true needs shard_calls = \"http\" (the gateway scatters "
                   "to the leaf servers)")
    edges = parse_edges(data.get("edge", {}), [*processes, GATEWAY, LEAF_EDGE], fail)
    return Topology(str(name), processes, databases, gateway, shard_calls, events, scale, leaves,
                    edges)


def edge_limit(field_name: str) -> float:
    """The largest value an [edge] table may give a HopSettings field: an hour of seconds,
    a minute of milliseconds, all of a share, ten thousand of a count."""
    for suffix, most in (("_s", 3_600), ("_ms", 60_000), ("_share", 1)):
        if field_name.endswith(suffix):
            return most
    return 10_000


def parse_edges(table: Any, names: list[str], fail: Callable[[str], TopologyError]
                ) -> dict[str, dict[str, float]]:
    """The [edge."CALLER->CALLEE"] tables: how the hops from CALLER to CALLEE behave
    (any ``HopSettings`` field but the fault hook; "*" for any process, "leaf" for the
    scatter's leaf calls). Values are non-negative numbers, counts whole."""
    if not isinstance(table, dict):
        raise fail("[edge] must hold tables named \"CALLER->CALLEE\"")
    edges: dict[str, dict[str, float]] = {}
    for key, settings in table.items():
        caller, arrow, callee = key.partition("->")
        if not arrow or not {caller, callee} <= {*names, "*"}:
            raise fail(f"[edge.{key!r}]: name it \"CALLER->CALLEE\" with each one of "
                       f"{', '.join(names)} or \"*\"")
        if not isinstance(settings, dict):
            raise fail(f"[edge.{key!r}] must be a table")
        for field_name, value in settings.items():
            kind = EDGE_FIELDS.get(field_name)
            if kind is None:
                raise fail(f"[edge.{key!r}]: unknown key {field_name!r}; expected "
                           f"{', '.join(EDGE_FIELDS)}")
            most = edge_limit(field_name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value <= most or (kind is int and value != int(value))):
                raise fail(f"[edge.{key!r}] {field_name} must be a "
                           f"{'whole number' if kind is int else 'number'} from 0 to {most:g}, "
                           f"not {value!r}")
        edges[key] = {k: EDGE_FIELDS[k](v) for k, v in settings.items()}
    return edges


LEAF_LIMITS = {"shards": MAX_SHARDS, "replicas": MAX_REPLICAS, "threads": 64}


def parse_leaves(table: Any, fail: Callable[[str], TopologyError]) -> LeafPlan:
    """The [leaves] table: shards, replicas, threads (whole numbers from 1 to
    ``LEAF_LIMITS``) and processes (true or false)."""
    if not isinstance(table, dict):
        raise fail("[leaves] must be a table")
    unknown = set(table) - {"processes", *LEAF_LIMITS, *QUANTITIES}
    if unknown:
        raise fail(f"[leaves]: unknown key(s) {sorted(unknown)}; expected processes, "
                   f"{', '.join([*LEAF_LIMITS, *QUANTITIES])}")
    default = LeafPlan()
    for key, most in LEAF_LIMITS.items():
        value = table.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise fail(f"[leaves] {key} must be a whole number from 1 to {most}, not {value!r}")
    if not isinstance(table.get("processes", False), bool):
        raise fail("[leaves] processes must be true or false")
    quantities = parse_quantities(table, "[leaves]", fail)
    if quantities and not table.get("processes", False):
        raise fail("[leaves] cpu and memory size leaf servers: they need processes = true "
                   "(otherwise the leaves live in the search process, sized by its table)")
    return LeafPlan(**{k: table.get(k, getattr(default, k)) for k in (*LEAF_LIMITS, "processes")},
                    **quantities)


def parse_scale(table: dict[str, Any], proc: str,
                fail: Callable[[str], TopologyError]) -> ProcessScale:
    """The workers, threads and replicas a [process.NAME] table sets (whole numbers from 1
    to ``SCALE_LIMITS``). Raises what ``fail`` makes of the first problem."""
    unknown = set(table) - {"components", *SCALE_LIMITS, *QUANTITIES}
    if unknown:
        raise fail(f"process {proc!r}: unknown key(s) {sorted(unknown)}; expected components, "
                   f"{', '.join([*SCALE_LIMITS, *QUANTITIES])}")
    for key, most in SCALE_LIMITS.items():
        value = table.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise fail(f"process {proc!r}: {key} must be a whole number from 1 to {most}, "
                       f"not {value!r}")
    return ProcessScale(table.get("workers"), table.get("threads"), table.get("replicas", 1),
                        **parse_quantities(table, f"process {proc!r}", fail))


def parse_quantities(table: dict[str, Any], where: str,
                     fail: Callable[[str], TopologyError]) -> dict[str, str]:
    """The cpu and memory ``table`` sets, each a positive Kubernetes quantity (a string:
    ``QUANTITIES``), by key; keys it does not set are left out."""
    found = {}
    for key, (example, form) in QUANTITIES.items():
        if key not in table:
            continue
        value = table[key]
        if (not isinstance(value, str) or not form.fullmatch(value)
                or float(re.match(r"[0-9.]+", value).group()) == 0):
            raise fail(f"{where}: {key} must be a positive Kubernetes quantity, a string such "
                       f"as {example}, not {value!r}")
        found[key] = value
    return found


def built_in_topologies() -> dict[str, Traversable]:
    """The topologies shipped with the shop (``shop/topologies/*.toml``), by name."""
    return {entry.name.removesuffix(".toml"): entry
            for entry in files("shop").joinpath(BUILT_IN).iterdir()
            if entry.name.endswith(".toml")}


EXTRA_MODULES = {"postgres": ("psycopg", "psycopg_pool"), "rabbitmq": ("pika",)}


def check_installed(topology: Topology) -> None:
    """Raise TopologyError naming the extra to install when ``topology`` needs a client
    library that is not installed (``pip install 'seambench[postgres]'``)."""
    for extra in topology.extras():
        missing = [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
        if missing:
            raise TopologyError(f"topology {topology.name!r} needs {', '.join(missing)}: "
                                f"pip install 'seambench[{extra}]'")


def topology_text(name_or_path: str | Path) -> tuple[str, Path]:
    """The TOML text of a built-in topology (by name) or of a ``.toml`` file, and the path
    its errors are named by. Raises TopologyError for an unknown name or an unreadable file."""
    path = Path(name_or_path)
    try:
        if path.suffix == ".toml":
            return read_text_file(path), path
    except TextFileError as exc:
        raise TopologyError(str(exc)) from None
    shipped = built_in_topologies()
    if str(name_or_path) not in shipped:
        raise TopologyError(f"no topology {str(name_or_path)!r}; known: "
                            f"{', '.join(sorted(shipped))} (or a path to a .toml file)")
    return (shipped[str(name_or_path)].read_text(encoding="utf-8"),
            Path(f"{BUILT_IN}/{name_or_path}.toml"))


def load_topology(name_or_path: str | Path) -> Topology:
    """A built-in topology by name (``monolith``, ``microservices``, ``hybrid``, ...: see
    ``built_in_topologies``), or a path to a TOML file."""
    text, path = topology_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from None
    return parse_topology(data, str(path))
