"""A docker-compose file for a topology: every server a service of the one image, on the
host's network, listening on a loopback port of its own.

Host networking, never Docker's bridge: the servers talk over 127.0.0.1 as the launcher's
do, so the only difference from ``seambench up`` is the container around each process. The
public server (the gateway, or the monolith's process) is on ``base_port``, the others on
the ports after it, one per server, a replicated process's every replica a service of its
own (``billing``, ``billing-2``): its callers balance over them, as with the launcher.

The file is compose format 2.4, which Debian's docker-compose 1.29 accepts, with health
checks and ``depends_on`` conditions; the data volume is shared by every service (SQLite
files, each server's metrics files), as the launcher's data dir is.
"""
from __future__ import annotations

import json
from typing import Any

from bench.deploy.servers import (BIND_ENV, CONFIG_DIR, DATA_DIR, DATA_DIR_ENV, ENV_FILE,
                                  TOPOLOGY_ENV, TOPOLOGY_FILE, URLS_ENV, dns_labels, server_names)
from bench.system.launcher import HOST, split_name
from shop.topology import Topology

COMPOSE_VERSION = "2.4"  # the last 2.x: health conditions in depends_on; compose 1.29 reads it
DATA_VOLUME = "data"
# How often compose asks a server's /readyz: each probe starts a Python in the container
# (~40 ms of CPU), so every 2 s on five servers would take a tenth of a core from what a
# measurement runs on. Readiness is waited for by whoever starts the load (the harness's
# connect, the tests), not by compose.
HEALTH_INTERVAL_S = 30
HEALTH_START_S = 60  # failures before this are not counted: a cold start seeds the catalog
STOP_GRACE_S = 15  # gunicorn's graceful stop is 10 s (the launcher's stop_timeout_s)


def server_ports(topology: Topology, base_port: int) -> dict[str, int]:
    """Each server's loopback port: the public one ``base_port``, the others after it."""
    return {name: base_port + i for i, name in enumerate(server_names(topology))}


def server_urls(topology: Topology, base_port: int) -> dict[str, str]:
    """Each server's base URL on the host (its /metrics is there too); the first is the
    deployment's public address."""
    return {name: f"http://{HOST}:{port}" for name, port in
            server_ports(topology, base_port).items()}


def urls_document(topology: Topology, base_port: int) -> dict[str, str | list[str]]:
    """What ``SEAMBENCH_URLS`` says: each process's URL, or a list of its replicas'."""
    grouped: dict[str, list[str]] = {}
    for name, url in server_urls(topology, base_port).items():
        grouped.setdefault(split_name(name)[0], []).append(url)
    return {name: urls[0] if len(urls) == 1 else urls for name, urls in grouped.items()}


def health_check(url: str) -> dict[str, Any]:
    """A compose healthcheck that asks ``url``/readyz with the image's own Python (neither
    curl nor wget is in the image): healthy once the server and what it calls answer."""
    probe = (f"import sys, urllib.request; "
             f"sys.exit(urllib.request.urlopen('{url}/readyz', timeout=2).status != 200)")
    return {"test": ["CMD", "python", "-c", probe], "interval": f"{HEALTH_INTERVAL_S}s",
            "timeout": "3s", "retries": 3, "start_period": f"{HEALTH_START_S}s"}


def compose_document(topology: Topology, image: str, base_port: int,
                     cpuset: str | None = None) -> dict[str, Any]:
    """The compose file of ``topology``, as data: one service per server, named by its DNS
    label. The public server is started after every other one (each answers /readyz once
    what it calls does: wait for that, not for ``up``). Secrets come from the env file
    beside it. ``cpuset``: the CPUs every container may run on ("1", "2-3"), as the
    harness pins the placements it starts."""
    urls = server_urls(topology, base_port)
    labels = dns_labels(list(urls))
    shared_env = {TOPOLOGY_ENV: f"{CONFIG_DIR}/{TOPOLOGY_FILE}",
                  URLS_ENV: json.dumps(urls_document(topology, base_port)),
                  DATA_DIR_ENV: DATA_DIR}
    public = next(iter(urls))
    services: dict[str, Any] = {}
    for name, url in urls.items():
        service: dict[str, Any] = {
            "image": image,
            "command": ["serve", name],
            "network_mode": "host",
            "env_file": [ENV_FILE],
            "environment": {**shared_env, BIND_ENV: url.removeprefix("http://")},
            "volumes": [f"./{TOPOLOGY_FILE}:{CONFIG_DIR}/{TOPOLOGY_FILE}:ro",
                        f"{DATA_VOLUME}:{DATA_DIR}"],
            "healthcheck": health_check(url),
            "stop_grace_period": f"{STOP_GRACE_S}s",
            "labels": {"io.seambench.server": name, "io.seambench.topology": topology.name},
        }
        if cpuset is not None:
            service["cpuset"] = cpuset
        if name == public and len(urls) > 1:
            service["depends_on"] = {labels[other]: {"condition": "service_started"}
                                     for other in urls if other != public}
        services[labels[name]] = service
    return {"version": COMPOSE_VERSION, "services": services, "volumes": {DATA_VOLUME: {}}}
