"""Placement: which process hosts which component, and what each process gets.

A ``Topology`` (read from ``topologies/*.toml``) partitions the four components into
processes and names each component's database. A ``Deployment`` adds what one run needs
(process URLs, secrets, data directory, sizes). ``build_process`` then gives one process a
``ShopProcess``: for each component, the local implementation if this process hosts it, or
a client stub aimed at the process that does. Logic never knows which it got.
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shop.auth.api import Auth
from shop.auth.client import AuthClient
from shop.auth.service import SCHEMA as AUTH_SCHEMA, AuthService, AuthSettings
from shop.balance import ReplicaSet, hop_for
from shop.billing.api import Billing
from shop.billing.client import BillingClient
from shop.billing.service import SCHEMA as BILLING_SCHEMA, BillingService
from shop.chain.api import Link
from shop.chain.client import ChainClient
from shop.chain.service import LocalLink, chain_path, next_component
from shop.events import OUTBOX_SCHEMA, DirectDelivery, Outbox, OutboxRelay
from shop.hops import HopClient, HopSettings
from shop.notify.api import Notify
from shop.notify.client import NotifyClient
from shop.notify.service import SCHEMA as NOTIFY_SCHEMA, NotifyService
from shop.search.api import Search
from shop.search.client import LeafClient, SearchClient
from shop.search.leaves import (MAX_REPLICAS, MAX_SHARDS, Leaf, LeafDelay, LeafService, Scatter,
                                seed_partition)
from shop.search.service import SCHEMA as SEARCH_SCHEMA, SearchService, SearchSettings, seed_catalog
from shop.errors import InvalidValue
from shop.storage import Database, Databases, check_url

if TYPE_CHECKING:
    from shop.broker import QueueConsumer, QueuePublisher

COMPONENTS = ("auth", "billing", "search", "notify")
SCHEMAS = {"auth": AUTH_SCHEMA, "billing": BILLING_SCHEMA + OUTBOX_SCHEMA,
           "search": SEARCH_SCHEMA, "notify": NOTIFY_SCHEMA}
GATEWAY = "gateway"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "topologies"


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

    def leaf_servers(self) -> list[str]:
        """The names of the leaf servers, shard by shard (none unless leaves are processes)."""
        if not self.leaves.processes:
            return []
        return [leaf_server(s, r) for s in range(self.leaves.shards)
                for r in range(self.leaves.replicas)]

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
                           "leaves"}
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; "
                   f"expected name, gateway, shard_calls, events, leaves, process, database")
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
    return Topology(str(name), processes, databases, gateway, shard_calls, events, scale, leaves)


LEAF_LIMITS = {"shards": MAX_SHARDS, "replicas": MAX_REPLICAS, "threads": 64}


def parse_leaves(table: Any, fail: Callable[[str], TopologyError]) -> LeafPlan:
    """The [leaves] table: shards, replicas, threads (whole numbers from 1 to
    ``LEAF_LIMITS``) and processes (true or false)."""
    if not isinstance(table, dict):
        raise fail("[leaves] must be a table")
    unknown = set(table) - {"processes", *LEAF_LIMITS}
    if unknown:
        raise fail(f"[leaves]: unknown key(s) {sorted(unknown)}; expected processes, "
                   f"{', '.join(LEAF_LIMITS)}")
    default = LeafPlan()
    for key, most in LEAF_LIMITS.items():
        value = table.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise fail(f"[leaves] {key} must be a whole number from 1 to {most}, not {value!r}")
    if not isinstance(table.get("processes", False), bool):
        raise fail("[leaves] processes must be true or false")
    return LeafPlan(**{k: table.get(k, getattr(default, k)) for k in (*LEAF_LIMITS, "processes")})


def parse_scale(table: dict[str, Any], proc: str,
                fail: Callable[[str], TopologyError]) -> ProcessScale:
    """The workers, threads and replicas a [process.NAME] table sets (whole numbers from 1
    to ``SCALE_LIMITS``). Raises what ``fail`` makes of the first problem."""
    unknown = set(table) - {"components", *SCALE_LIMITS}
    if unknown:
        raise fail(f"process {proc!r}: unknown key(s) {sorted(unknown)}; expected components, "
                   f"{', '.join(SCALE_LIMITS)}")
    for key, most in SCALE_LIMITS.items():
        value = table.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise fail(f"process {proc!r}: {key} must be a whole number from 1 to {most}, "
                       f"not {value!r}")
    return ProcessScale(table.get("workers"), table.get("threads"), table.get("replicas", 1))


def load_topology(name_or_path: str | Path) -> Topology:
    """``monolith`` / ``microservices`` / ``hybrid`` from topologies/, or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = TOPOLOGY_DIR / f"{name_or_path}.toml"
        if not path.exists():
            known = sorted(p.stem for p in TOPOLOGY_DIR.glob("*.toml"))
            raise TopologyError(f"no topology {str(name_or_path)!r}; known: {', '.join(known)} "
                                f"(or a path to a .toml file)")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from None
    return parse_topology(data, str(path))


@dataclass(frozen=True)
class Deployment:
    """Everything a process of one run needs to build itself; travels as JSON."""

    topology: Topology
    data_dir: str
    service_credential: str
    token_secret: str
    urls: dict[str, str] = field(default_factory=dict)  # process (or "gateway") -> base URL
    # A replicated process -> every replica's base URL, the first being its ``urls`` entry.
    replica_urls: dict[str, list[str]] = field(default_factory=dict)
    scrypt_n: int = 2**14
    search: SearchSettings = SearchSettings()
    hop: HopSettings = HopSettings()
    leaf_delays: dict[str, LeafDelay] = field(default_factory=dict)  # injectable, by name

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Deployment":
        data = json.loads(text)
        return cls(topology=Topology.from_dict(data.pop("topology")),
                   search=SearchSettings(**data.pop("search")), hop=HopSettings(**data.pop("hop")),
                   leaf_delays={k: LeafDelay(**v) for k, v in data.pop("leaf_delays", {}).items()},
                   **data)

    def database_url(self, component: str) -> str:
        return self.topology.database_url(component, self.data_dir)

    def leaf_database_url(self, shard: int) -> str:
        """Shard ``shard``'s own database (SQLite, like search's: an FTS5 index)."""
        shards = self.topology.leaves.shards
        return f"sqlite:///{Path(self.data_dir).resolve() / f'search-leaf-{shard}-of-{shards}'}.db"

    def urls_of(self, process: str) -> list[str]:
        """The base URL of each replica of ``process`` (one unless it is replicated).
        Raises KeyError for a process with no URL."""
        return self.replica_urls.get(process) or [self.urls[process]]


def prepare_storage(deployment: Deployment, components: tuple[str, ...] = COMPONENTS) -> None:
    """Create the components' tables and seed the catalog (idempotent; run before forking)."""
    databases = Databases()
    try:
        for comp in components:
            databases.get(deployment.database_url(comp)).apply_schema(SCHEMAS[comp])
        if "search" in components:
            seed_catalog(databases.get(deployment.database_url("search")), deployment.search)
            for shard in range(deployment.topology.leaves.shards):
                prepare_leaf(deployment, shard, databases)
    finally:
        databases.close()
    events = deployment.topology.events
    if events != HTTP_EVENTS and {"billing", "notify"} & set(components):
        from shop.broker import declare_queue  # pika only where a broker is used
        declare_queue(events, deployment.topology.event_queue(deployment.data_dir))


def prepare_leaf(deployment: Deployment, shard: int, databases: Databases) -> Database:
    """Shard ``shard``'s database, its part of the catalog seeded (idempotent)."""
    db = databases.get(deployment.leaf_database_url(shard))
    seed_partition(db, deployment.search, shard, deployment.topology.leaves.shards)
    return db


def local_leaves(deployment: Deployment, databases: Databases,
                 shards: range | None = None, replicas: range | None = None
                 ) -> dict[tuple[int, int], Leaf]:
    """``LeafService``s by (shard, replica): every leaf, or those of the ranges given."""
    plan = deployment.topology.leaves
    leaves: dict[tuple[int, int], Leaf] = {}
    for shard in shards if shards is not None else range(plan.shards):
        db = databases.get(deployment.leaf_database_url(shard))
        for replica in replicas if replicas is not None else range(plan.replicas):
            leaves[shard, replica] = LeafService(db, shard, replica, deployment.leaf_delays)
    return leaves


def remote_leaves(deployment: Deployment, hop: Callable[[str], HopClient | ReplicaSet]
                  ) -> list[list[Leaf]]:
    """Client stubs of every leaf, shard by shard, each over ``hop(server)``: its own leaf
    server's, or the search process's when that hosts the leaves."""
    topo = deployment.topology
    plan = topo.leaves
    return [[LeafClient(hop(leaf_server(s, r) if plan.processes else topo.process_of("search")),
                        s, r) for r in range(plan.replicas)] for s in range(plan.shards)]


def leaf_grid(leaves: dict[tuple[int, int], Leaf], plan: LeafPlan) -> list[list[Leaf]]:
    return [[leaves[s, r] for r in range(plan.replicas)] for s in range(plan.shards)]


def discard_storage(deployment: Deployment) -> None:
    """Drop what ``prepare_storage`` made on servers: the PostgreSQL databases and the broker
    queue (SQLite files go with the data dir). For a deployment whose data is not kept."""
    from shop.storage.postgres import drop_database  # psycopg only where PostgreSQL is used
    for url in sorted({deployment.database_url(c) for c in COMPONENTS}):
        if url.startswith(("postgresql://", "postgres://")):
            drop_database(url)
    if deployment.topology.events != HTTP_EVENTS:
        from shop.broker import delete_queue
        delete_queue(deployment.topology.events,
                     deployment.topology.event_queue(deployment.data_dir))


@dataclass
class ShopProcess:
    """The four components as one process sees them, and what it must start and stop."""

    name: str
    hosted: tuple[str, ...]
    auth: Auth
    billing: Billing
    search: Search
    notify: Notify
    scatter: Scatter | None
    relay: OutboxRelay | None
    databases: Databases
    hops: list[HopClient | ReplicaSet]
    links: dict[str, Link] = field(default_factory=dict)  # hosted component -> its chain link
    leaves: dict[tuple[int, int], Leaf] = field(default_factory=dict)  # hosted, by (shard, replica)
    consumer: QueueConsumer | None = None  # notify's end of the broker, when events go by one
    broker: QueuePublisher | None = None  # the relay's end of the broker, closed after the relay

    def start(self) -> None:
        if self.relay is not None:
            self.relay.start()
        if self.consumer is not None:
            self.consumer.start()

    def metrics(self) -> dict[str, float]:
        """What /metrics reads live at each scrape: the outbox's state, shared by every
        worker. (Notifications are counted as notify stores them: shop/telemetry.py.)"""
        out: dict[str, float] = {}
        if self.relay is not None:
            out["outbox_backlog"] = self.relay.backlog()
            out["outbox_rejected"] = self.relay.rejected()
        return out

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.broker is not None:  # a clean AMQP close, not a dropped connection
            self.broker.close()
        if self.scatter is not None:
            self.scatter.close()
        for hop in self.hops:
            hop.close()
        self.databases.close()


def build_process(deployment: Deployment, process: str) -> ShopProcess:
    """Wire one process: local implementations for what it hosts, stubs for the rest."""
    topo = deployment.topology
    if process not in topo.processes:
        raise TopologyError(f"topology {topo.name!r} has no process {process!r}")
    hosted = topo.processes[process]
    databases = Databases()
    hops: dict[str, HopClient | ReplicaSet] = {}
    prepare_storage(deployment, hosted)

    def db(component: str) -> Database:
        return databases.get(deployment.database_url(component))

    def hop_to(component: str) -> HopClient | ReplicaSet:
        owner = topo.process_of(component)
        if owner not in hops:
            if owner not in deployment.urls:
                raise TopologyError(f"process {process!r} needs the URL of {owner!r}")
            hops[owner] = hop_for(deployment.urls_of(owner), deployment.service_credential,
                                  deployment.hop, owner)
        return hops[owner]

    auth: Auth = (AuthService(db("auth"), AuthSettings(deployment.token_secret.encode(),
                                                       scrypt_n=deployment.scrypt_n))
                  if "auth" in hosted else AuthClient(hop_to("auth")))
    search: Search = (SearchService(db("search"), deployment.search)
                      if "search" in hosted else SearchClient(hop_to("search")))
    notify: Notify = NotifyService(db("notify")) if "notify" in hosted else NotifyClient(hop_to("notify"))
    relay = consumer = broker = None
    by_broker = topo.events != HTTP_EVENTS
    queue = topo.event_queue(deployment.data_dir)
    if by_broker:
        from shop.broker import QueueConsumer, QueuePublisher  # pika only where a broker is used
    if by_broker and "notify" in hosted:
        consumer = QueueConsumer(topo.events, queue, notify)
    if "billing" in hosted:
        same_db = deployment.database_url("billing") == deployment.database_url("notify")
        if "notify" in hosted and same_db:
            publisher = DirectDelivery(notify)  # one transaction writes debit and notification
        else:
            # The relay hands each outbox row to notify: over a hop, or to the broker's queue.
            broker = QueuePublisher(topo.events, queue) if by_broker else None
            relay = OutboxRelay(db("billing"), broker or notify)
            publisher = Outbox(db("billing"), relay.wake)
        billing: Billing = BillingService(db("billing"), search, publisher)
    else:
        billing = BillingClient(hop_to("billing"))
    # With local shard calls the search process scatters to its own leaves by function
    # calls; otherwise the gateway scatters over hops (microservices/gateway.py), to the
    # leaves here or to leaf servers of their own.
    leaves = (local_leaves(deployment, databases)
              if "search" in hosted and not topo.leaves.processes else {})
    scatter = (Scatter(leaf_grid(leaves, topo.leaves))
               if "search" in hosted and topo.shard_calls == "local" else None)
    # The chain: a hosted component's link is a function call, any other a hop to its owner
    # (built now, so a missing URL fails here). Links resolve the next one per call, so
    # the ring may come back to this process; it never calls itself over HTTP.
    remote: dict[str, Link] = {after: ChainClient(hop_to(after), after)
                               for after in map(next_component, hosted) if after not in hosted}
    links: dict[str, Link] = {}

    def resolve(component: str) -> Link:
        return links[component] if component in links else remote[component]

    links.update((comp, LocalLink(comp, resolve)) for comp in hosted)
    return ShopProcess(process, hosted, auth, billing, search, notify, scatter, relay,
                       databases, list(hops.values()), links, leaves, consumer, broker)
