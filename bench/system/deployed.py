"""A placement seambench did not start: a shop deployed on containers or a cluster, described
by a target file and measured over HTTP only (``seambench run --target FILE``).

A target file (TOML)::

    name = "microservices-compose"      # the placement's name in the run (default: file stem)
    topology = "microservices"          # what it runs: a built-in name or a .toml path
    base_url = "http://127.0.0.1:18000" # its public address
    service_credential_env = "SEAMBENCH_SERVICE_CREDENTIAL"  # the env var holding it ...
    service_credential_file = ".env"    # ... or, when it is not set, this env file's line
    ready_timeout_s = 60                # how long every server may take to answer /readyz

    [metrics]                           # every server's /metrics, by server name
    gateway = "http://127.0.0.1:18000/metrics"
    auth = "http://127.0.0.1:18001/metrics"

A server is named as the launcher names it: a process of the topology, ``gateway``, a leaf
server ``leaf.S.R``, a second replica ``billing#2``. Its own address (for the internal
endpoints the harness asks, such as notify's payment lag) is its /metrics URL's
``http://HOST:PORT``. The service credential is read from the environment, or from an env
file beside the target (``seambench deploy --to compose`` writes both), never from the target
file itself, so a target file can be committed.

``DeployedShop`` answers what the harness asks a ``RunningShop``: its public address, its
deployment (topology, addresses, credential), its servers, which of them are dead. What
starts, pins or kills processes cannot be done to it; experiments that need that say so
(``Experiment.needs_own_processes``).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shop.address import address_of
from shop.openapi import OPENAPI_PATH
from bench.deploy.servers import read_env_file
from bench.system.launcher import REPLICA_MARK, process_names
from shop.placement import Deployment, Topology, TopologyError, load_topology
from shop.readiness import answers
from shop.textfile import TextFileError, read_text_file

DEFAULT_CREDENTIAL_ENV = "SEAMBENCH_SERVICE_CREDENTIAL"
READY_TIMEOUT_S = 60.0
ALIVE_TIMEOUT_S = 2.0


class TargetError(ValueError):
    """A target file that cannot be used, or a target that does not answer; one line."""


@dataclass(frozen=True)
class Target:
    """A deployed placement: where it answers and what it runs (see the module docstring)."""

    name: str
    topology: Topology  # named ``name``: the placement's name throughout a run
    base_url: str
    metrics: dict[str, str]  # server name -> its /metrics URL
    credential_env: str = DEFAULT_CREDENTIAL_ENV
    ready_timeout_s: float = READY_TIMEOUT_S
    credential_file: str | None = None  # an env file holding ``credential_env``'s line

    def credential(self) -> str:
        """The service credential: ``credential_env`` from the environment, else from the
        credential file; "" when neither has it."""
        if os.environ.get(self.credential_env):
            return os.environ[self.credential_env]
        if self.credential_file is None:
            return ""
        try:
            return read_env_file(Path(self.credential_file)).get(self.credential_env, "")
        except (OSError, UnicodeDecodeError):
            return ""

    def server_url(self, server: str) -> str:
        """``http://HOST:PORT`` of ``server`` (from its /metrics URL)."""
        parts = urlsplit(self.metrics[server])
        return f"{parts.scheme}://{parts.netloc}"

    def describe(self) -> dict[str, Any]:
        """What a run's manifest records of it (never the credential)."""
        return {"name": self.name, "base_url": self.base_url, "metrics": dict(self.metrics),
                "credential_env": self.credential_env, "ready_timeout_s": self.ready_timeout_s,
                "credential_file": self.credential_file}


def server_process(server: str) -> str:
    """The process (or ``gateway``, or a leaf server) a server name runs."""
    return server.partition(REPLICA_MARK)[0]


def parse_target(data: dict[str, Any], source: str, base_dir: Path = Path(".")) -> Target:
    """Validate a target document. Raises TargetError naming ``source``."""
    def fail(why: str) -> TargetError:
        return TargetError(f"{source}: {why}")

    unknown = set(data) - {"name", "topology", "base_url", "metrics", "service_credential_env",
                           "service_credential_file", "ready_timeout_s"}
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; expected name, topology, base_url, "
                   f"service_credential_env, service_credential_file, ready_timeout_s, "
                   f"[metrics]")
    name = str(data.get("name", Path(source).stem))
    topology_ref = data.get("topology")
    if not isinstance(topology_ref, str) or not topology_ref:
        raise fail("topology = \"NAME\" (a built-in topology) or \"FILE.toml\" is required")
    try:
        ref = base_dir / topology_ref if topology_ref.endswith(".toml") else topology_ref
        topology = replace(load_topology(ref), name=name)
    except TopologyError as exc:
        raise fail(f"topology: {exc}") from None
    base_url = check_url(data.get("base_url"), "base_url", fail)
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise fail("[metrics] must map every server's name to its /metrics URL")
    servers = process_names(topology)
    for server, url in metrics.items():
        if server not in servers:
            raise fail(f"[metrics] {server!r} is no server of topology {topology_ref!r}; its "
                       f"servers: {', '.join(servers)}")
        check_url(url, f"[metrics] {server}", fail)
    missing = [s for s in servers if s not in metrics]
    if missing:
        raise fail(f"[metrics] lacks {', '.join(missing)}: a server left out would leave its "
                   f"CPU and memory out of the placement's")
    credential_env = data.get("service_credential_env", DEFAULT_CREDENTIAL_ENV)
    if not isinstance(credential_env, str) or not credential_env:
        raise fail("service_credential_env must name an environment variable")
    ready = data.get("ready_timeout_s", READY_TIMEOUT_S)
    if isinstance(ready, bool) or not isinstance(ready, (int, float)) or not 0 < ready <= 3600:
        raise fail(f"ready_timeout_s must be a number of seconds from 0 to 3600, not {ready!r}")
    credential_file = data.get("service_credential_file")
    if credential_file is not None and (not isinstance(credential_file, str) or not credential_file):
        raise fail("service_credential_file must be a path (relative to the target file)")
    return Target(name, topology, base_url, dict(metrics), credential_env, float(ready),
                  None if credential_file is None else str(base_dir / credential_file))


def target_text(name: str, topology: str, base_url: str, metrics: dict[str, str],
                credential_file: str | None = None, comment: str = "") -> str:
    """A target file (TOML) for a deployment: what ``load_target`` reads."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [f"name = {json.dumps(name)}", f"topology = {json.dumps(topology)}",
              f"base_url = {json.dumps(base_url)}",
              f"service_credential_env = {json.dumps(DEFAULT_CREDENTIAL_ENV)}"]
    if credential_file is not None:
        lines.append(f"service_credential_file = {json.dumps(credential_file)}")
    lines += ["", "[metrics]", *(f"{json.dumps(server)} = {json.dumps(url)}"
                                 for server, url in metrics.items())]
    return "\n".join(lines) + "\n"


def check_url(value: Any, what: str, fail: Any) -> str:
    """``value`` if it is an ``http://HOST:PORT[/path]`` URL, else ``fail``'s error."""
    try:
        address_of(value if isinstance(value, str) else "")
    except ValueError:
        raise fail(f"{what} must be an http://HOST:PORT URL, not {value!r}") from None
    return value.rstrip("/")


def load_target(path: str | Path) -> Target:
    """The target described by the TOML file at ``path``. Raises TargetError."""
    path = Path(path)
    try:
        data = tomllib.loads(read_text_file(path))
    except TextFileError as exc:
        raise TargetError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML: {exc}") from None
    return parse_target(data, str(path), path.parent)


@dataclass
class DeployedServer:
    """One server of a target, known only by its address."""

    name: str
    url: str
    pid: None = None  # not ours: nothing to sample in /proc, pin or signal

    def exit_report(self) -> str:
        return f"server {self.name!r} of the target stopped answering ({self.url}/healthz)"


@dataclass
class DeployedShop:
    """A target as the harness sees a running placement (``bench.system.launcher.RunningShop``)."""

    target: Target
    deployment: Deployment
    processes: dict[str, DeployedServer]
    fingerprint: dict[str, Any]

    @property
    def base_url(self) -> str:
        return self.target.base_url

    def dead(self) -> list[DeployedServer]:
        """Servers that do not answer /healthz now."""
        return [s for s in self.processes.values() if not answers(s.url, ALIVE_TIMEOUT_S)]

    def replicas(self, process: str) -> list[DeployedServer]:
        return [s for name, s in self.processes.items() if server_process(name) == process]

    def database_pids(self) -> list[int]:
        return []  # its databases are wherever the deployment put them: not measured

    def metrics_urls(self) -> dict[str, str]:
        return dict(self.target.metrics)


def target_deployment(target: Target, credential: str) -> Deployment:
    """The target as a ``Deployment``: what the harness's queries read (addresses, topology,
    credential). It has no data dir or token key of ours: those are the deployment's own."""
    urls = {process: target.server_url(process) for process in target.metrics
            if REPLICA_MARK not in process}
    replicas: dict[str, list[str]] = {}
    for server in target.metrics:
        replicas.setdefault(server_process(server), []).append(target.server_url(server))
    return Deployment(topology=target.topology, data_dir="", service_credential=credential,
                      token_secret="", urls=urls,
                      replica_urls={p: u for p, u in replicas.items() if len(u) > 1})


def fingerprint_of(target: Target, timeout_s: float = 5.0) -> dict[str, Any]:
    """What identifies the shop a target runs: its API document's version and SHA-256, and
    its servers. Raises TargetError when the public address does not serve the document."""
    host, port = address_of(target.base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", OPENAPI_PATH)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise TargetError(f"target {target.name!r}: {target.base_url}{OPENAPI_PATH}: no answer "
                          f"({exc})") from None
    finally:
        conn.close()
    if response.status != 200:
        raise TargetError(f"target {target.name!r}: {target.base_url}{OPENAPI_PATH}: HTTP "
                          f"{response.status}")
    try:
        version = json.loads(body)["info"]["version"]
    except (ValueError, KeyError, TypeError):
        raise TargetError(f"target {target.name!r}: {OPENAPI_PATH} is not the shop's API "
                          f"document") from None
    return {**target.describe(), "api_version": version,
            "openapi_sha256": hashlib.sha256(body).hexdigest()}


@contextmanager
def connect(target: Target) -> Iterator[DeployedShop]:
    """The target, once every server answers /readyz (within its ``ready_timeout_s``), with its
    fingerprint. Raises TargetError naming what does not answer, or a credential not set.
    Nothing is started, so nothing is stopped on exit."""
    credential = target.credential()
    if not credential:
        where = f" (or its line in {target.credential_file})" if target.credential_file else ""
        raise TargetError(f"target {target.name!r}: set ${target.credential_env}{where} to the "
                          f"deployment's service credential (the harness reads notify's "
                          f"payment lag from an internal endpoint)")
    servers = {name: DeployedServer(name, target.server_url(name)) for name in target.metrics}
    ready_timeout_s = target.ready_timeout_s
    deadline = time.monotonic() + ready_timeout_s
    pending = dict(servers)
    while pending:
        pending = {n: s for n, s in pending.items() if not answers(s.url, 1.0, "/readyz")}
        if pending and time.monotonic() > deadline:
            raise TargetError(f"target {target.name!r}: not ready after {ready_timeout_s:.0f} s: "
                              + ", ".join(f"{n} ({s.url}/readyz)" for n, s in sorted(pending.items())))
        if pending:
            time.sleep(0.2)
    if not answers(target.base_url, 1.0, "/readyz"):
        raise TargetError(f"target {target.name!r}: its public address {target.base_url} does "
                          f"not answer /readyz")
    yield DeployedShop(target, target_deployment(target, credential), servers, fingerprint_of(target))
