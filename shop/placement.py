"""Placement: which process hosts which component, and what each process gets.

A ``Topology`` (``shop.topology``, read from ``shop/topologies/*.toml``) partitions the four
components into processes and names each component's database. A ``Deployment`` adds what
one run needs (process URLs, secrets, data directory, sizes). ``build_process`` then gives one process a
``ShopProcess``: for each component, the local implementation if this process hosts it, or
a client stub aimed at the process that does. Logic never knows which it got.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from shop.auth.api import Auth
from shop.auth.client import AuthClient
from shop.auth.service import SCHEMA as AUTH_SCHEMA, AuthService, AuthSettings
from shop.balance import ReplicaSet, hop_for
from shop.billing.api import Billing
from shop.billing.client import BillingClient
from shop.billing.service import SCHEMA as BILLING_SCHEMA, BillingService
from shop.chain.api import Link
from shop.chain.client import ChainClient
from shop.chain.service import LocalLink, next_component
from shop.events import OUTBOX_SCHEMA, DirectDelivery, Outbox, OutboxRelay
from shop.hops import HopClient, HopSettings, edge_sets, edge_settings
from shop.notify.api import Notify
from shop.notify.client import NotifyClient
from shop.notify.service import SCHEMA as NOTIFY_SCHEMA, NotifyService
from shop.search.api import Search
from shop.search.client import LeafClient, SearchClient
from shop.search.leaves import Leaf, LeafDelay, LeafService, Scatter, seed_partition
from shop.search.service import SCHEMA as SEARCH_SCHEMA, SearchService, SearchSettings, seed_catalog
from shop.openapi import ApiShape
from shop.storage import Database, Databases
# The topology's names are used with placement's everywhere: one import serves both.
from shop.topology import (COMPONENTS, GATEWAY, HTTP_EVENTS, LeafPlan, ProcessScale, Topology,  # noqa: F401
                           TopologyError, chain_http_hops, check_installed, leaf_of, leaf_server, load_topology,
                           parse_topology, run_tag)

if TYPE_CHECKING:
    from shop.broker import QueueConsumer, QueuePublisher

GATEWAY_WAIT_MARGIN_S = 1.0
GATEWAY_WAIT_FLOOR_S = 3.0
SCHEMAS = {"auth": AUTH_SCHEMA, "billing": BILLING_SCHEMA + OUTBOX_SCHEMA,
           "search": SEARCH_SCHEMA, "notify": NOTIFY_SCHEMA}


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
    # How long (s) an outbox row claimed by a relay that died waits before another relay
    # retries it; tests shorten it so a killed worker's claims are not waited out for 15 s.
    outbox_lease_s: float = 15.0

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

    def hop_settings(self, caller: str, callee: str) -> HopSettings:
        """How the hops from process ``caller`` to ``callee`` (a process, or "leaf") behave:
        ``hop`` with the topology's [edge] tables over the built-in defaults. Unless a table
        sets it, the gateway's read timeout to a process is ``gateway_wait_s``."""
        settings = edge_settings(self.hop, self.topology.edges, caller, callee)
        if (caller == GATEWAY and callee in self.topology.processes
                and not edge_sets(self.topology.edges, caller, callee, "read_timeout_s")):
            settings = replace(settings, read_timeout_s=self.gateway_wait_s(callee))
        return settings

    def gateway_wait_s(self, process: str) -> float:
        """How long the gateway waits for ``process``, seconds: a margin longer than the
        process may itself wait on the processes a request to it calls in turn, so a stalled
        dependency is named by the process that called it, not taken for the process (at
        least ``GATEWAY_WAIT_FLOOR_S``: a login's scrypt under load). With the defaults: 5 s
        for billing (auth, then search), 3 s for the others."""
        own = sum(self.hop_settings(process, other).read_timeout_s
                  for other in self.topology.downstream(process))
        return max(GATEWAY_WAIT_FLOOR_S, own + GATEWAY_WAIT_MARGIN_S)

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
    for url in sorted({deployment.database_url(c) for c in COMPONENTS}):
        if url.startswith(("postgresql://", "postgres://")):
            from shop.storage.postgres import drop_database  # psycopg: only where it is used
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


def build_process(deployment: Deployment, process: str, threads: int = 8) -> ShopProcess:
    """Wire one process: local implementations for what it hosts, stubs for the rest.
    ``threads``: its threads per worker, which the hops' bulkheads take shares of."""
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
                                  deployment.hop_settings(process, owner), owner,
                                  threads=threads)
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
            relay = OutboxRelay(db("billing"), broker or notify,
                                lease_s=deployment.outbox_lease_s)
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


def api_shape(deployment: Deployment) -> ApiShape:
    """What the public API document of ``deployment`` depends on (shop/openapi.py)."""
    return ApiShape(deployment.topology.leaves.shards, tuple(sorted(deployment.leaf_delays)))
