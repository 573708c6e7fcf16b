"""``seambench serve NAME``: one server of a deployed topology, in the foreground, started
through the launcher's own code (``bench/system/launcher.py``): the same app, the same
gunicorn command line and the same environment, only bound to an address of its own
instead of a socket the launcher holds. In a container it is the image's entry point.

What the launcher knows because it starts every server (the other servers' addresses, the
secrets) is read from the environment (``bench/deploy/servers.py`` names the variables).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from bench.deploy.servers import server_names
from bench.system.launcher import (LaunchSettings, app_spec, deployment_of, fresh_metrics_dir,
                                   gunicorn_command, process_settings, server_env, split_name)
from shop.address import address_of
from shop.placement import Deployment, prepare_leaf, prepare_storage
from shop.storage import Databases
from shop.topology import GATEWAY, Topology, leaf_of


class ServeError(ValueError):
    """What ``seambench serve`` was given cannot start a server; the message says why."""


def read_urls(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The servers' addresses from ``SEAMBENCH_URLS``: a JSON object mapping a process, leaf
    server or the gateway to its base URL, or to a list of them, one per replica server
    (callers balance over them). Returns (``Deployment.urls``, ``Deployment.replica_urls``).
    Raises ServeError for anything else."""
    try:
        given = json.loads(text)
    except ValueError as exc:
        raise ServeError(f"the servers' URLs are not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ServeError("the servers' URLs must be a JSON object: server -> URL or [URL, ...]")
    urls: dict[str, str] = {}
    replicas: dict[str, list[str]] = {}
    for name, value in given.items():
        listed = value if isinstance(value, list) else [value]
        if not listed or not all(isinstance(url, str) for url in listed):
            raise ServeError(f"the URL of {name!r} must be a string or a non-empty list of them")
        for url in listed:
            try:
                address_of(url)
            except ValueError as exc:
                raise ServeError(f"the URL of {name!r}: {exc}") from None
        urls[name] = listed[0]
        if len(listed) > 1:
            replicas[name] = list(listed)
    return urls, replicas


def deployment_for(topology: Topology, urls_text: str, token_secret: str, credential: str,
                   data_dir: Path) -> Deployment:
    """The deployment every server of one deployed topology builds alike: the other
    settings are the launcher's defaults, as ``seambench up`` runs them. Raises ServeError
    naming the servers the URLs leave out."""
    urls, replicas = read_urls(urls_text)
    needed = [*topology.processes, *topology.leaf_servers(),
              *([GATEWAY] if topology.gateway else [])]
    missing = [name for name in needed if name not in urls]
    if missing:
        raise ServeError(f"no URL for {', '.join(missing)} (topology {topology.name!r} "
                         f"runs {', '.join(needed)})")
    return deployment_of(topology, data_dir, LaunchSettings(), urls, replicas, credential,
                         token_secret)


def server_name(topology: Topology, name: str) -> str:
    """``name`` checked against the servers ``topology`` runs. Raises ServeError."""
    names = server_names(topology)
    if name not in names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ServeError(f"topology {topology.name!r} runs no server {name!r}; it runs {shown}")
    return name


def prepare_server(deployment: Deployment, name: str) -> None:
    """Create and seed the databases of what server ``name`` hosts, before its workers fork
    (as the launcher's ``prepare`` does for a whole topology; idempotent, so replicas
    sharing a database may each do it)."""
    process, _ = split_name(name)
    where = leaf_of(process)
    if where is not None:
        databases = Databases()
        try:
            prepare_leaf(deployment, where[0], databases)
        finally:
            databases.close()
    elif process in deployment.topology.processes:
        prepare_storage(deployment, deployment.topology.processes[process])


def server_exec(deployment: Deployment, name: str, bind: str,
                settings: LaunchSettings) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start server ``name`` listening on ``bind``
    (``HOST:PORT``): the launcher's, with an emptied metrics directory of its own."""
    process, _ = split_name(name)
    settings = process_settings(settings, deployment.topology, process)
    command = gunicorn_command(app_spec(deployment.topology, process), bind, settings, name)
    metrics = fresh_metrics_dir(Path(deployment.data_dir), name)
    return command, {**os.environ, **server_env(deployment, name, settings, metrics)}


def serve(topology: Topology, name: str, bind: str, data_dir: Path, urls_text: str,
          token_secret: str, credential: str, workers: int = 1, threads: int = 8) -> None:
    """Prepare server ``name``'s databases and become its gunicorn (``os.execvpe``: the
    container's main process is then gunicorn's master, which gets its signals). Returns
    only by raising: ServeError for unusable input, OSError where the data dir is not
    writable or gunicorn cannot be run."""
    server_name(topology, name)
    try:
        address_of(f"http://{bind}")
    except ValueError:
        raise ServeError(f"--bind {bind!r} is not HOST:PORT") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    deployment = deployment_for(topology, urls_text, token_secret, credential, data_dir)
    prepare_server(deployment, name)
    command, env = server_exec(deployment, name, bind,
                               replace(LaunchSettings(), workers=workers, threads=threads))
    os.execvpe(command[0], command, env)
