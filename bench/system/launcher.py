"""Start and stop a topology: one gunicorn process group per process, on free loopback ports.
(Spawning, process groups and signals are bench/system/processes.py's.)

``launch`` prepares the databases (so workers never race to seed them), starts every process
in its own session (so one ``killpg`` stops a gunicorn master and all its workers), waits for
each ``/readyz``, and on exit stops everything it started: SIGTERM to each group, then
SIGKILL to whatever is left, leaving no process and no bound port. If a process dies while
starting, ``LaunchError`` names it and carries the tail of its log.

A process the topology replicates runs as several such servers, ``billing``, ``billing#2``,
...: each its own process group, port and log, with the workers and threads its
[process.NAME] table sets (else the launch's).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.system.edge import Edge, EdgeError, nginx_command, nginx_config, resolve_edge
from bench.system.faultproxy import write_state
from bench.system.gitref import ShopSource
from bench.system.processes import child_env, signals_held, spawn_group, stop_groups
from bench.system.supervision import Supervisor
from shop.address import address_of
from shop.errors import DomainError
from shop.hops import HopSettings
from shop.placement import (COMPONENTS, GATEWAY, Deployment, Topology, discard_storage, leaf_of,
                            prepare_storage)
from shop.readiness import answers
from shop.search.leaves import LeafDelay
from shop.search.service import SearchSettings
from shop.server import DEPLOYMENT_ENV, PROCESS_ENV, THREADS_ENV
from shop.telemetry import MULTIPROC_ENV
from shop.tracing import RATIO_ENV, TraceExport

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PROXY_PREFIX = "proxy:"  # the listener of the fault proxy in front of a process
REPLICA_MARK = "#"  # "billing#2": no process name has one, so a server name is never ambiguous
# glibc raises its mmap threshold after a large block is freed, so scrypt's 16 MiB work
# buffers end up kept in each thread's heap: a worker's RSS then grew 81 -> 189 MiB over a
# run with logins spread over its threads. A fixed threshold returns them; RSS is then
# memory the process holds, not what the allocator happened to keep.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
LOG_TAIL_LINES = 20


class LaunchError(RuntimeError):
    """A process of the topology failed to start; the message names it and shows its log."""


@dataclass(frozen=True)
class LaunchSettings:
    workers: int = 1  # gunicorn worker processes per process
    threads: int = 8  # gthread threads per worker
    keep_alive_s: int = 30
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0
    scrypt_n: int = 2**14
    search: SearchSettings = SearchSettings()
    hop: HopSettings = HopSettings()  # timeouts and fault hooks of every HTTP hop
    # Latency injections a /search/scatter request may name (shop/search/leaves.py)
    leaf_delays: dict[str, LeafDelay] = field(default_factory=dict)
    cpus: tuple[int, ...] | None = None  # CPU set every process of the topology is pinned to
    supervise: bool = False  # restart a server that dies (bench/system/supervision.py), else report it
    # Processes whose callers reach them through a fault proxy (bench/system/faultproxy.py)
    proxied: tuple[str, ...] = ()
    outbox_lease_s: float = 15.0  # see shop.placement.Deployment
    # The shop's code at another git ref (``run --baseline-ref``); None: this checkout's
    source: ShopSource | None = None
    edge: str = "auto"  # what fronts the public process: bench/system/edge.py's EDGES
    trace: TraceExport | None = None  # every server traces so (shop/tracing.py); None: off


@dataclass
class ServerProcess:
    name: str
    url: str
    log_path: Path
    popen: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_report(self) -> str:
        """Which process died, how, and the end of its log."""
        return (f"process {self.name!r} exited with code {self.popen.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class FaultProxy:
    """The fault proxy in front of one process: its process group and its state file."""

    process: str
    url: str  # what the process's callers are given
    state_path: Path
    popen: subprocess.Popen

    def set(self, mode: str, **params: float) -> None:
        write_state(self.state_path, mode, **params)


@dataclass
class EdgeProxy:
    """The reverse proxy in front of the public process (bench/system/edge.py)."""

    edge: Edge
    url: str
    log_path: Path
    popen: subprocess.Popen


@dataclass
class RunningShop:
    """A started topology. ``base_url`` is the one public address: the edge proxy's when
    there is one, else the gateway's or the monolith's own."""

    deployment: Deployment
    processes: dict[str, ServerProcess] = field(default_factory=dict)
    supervisor: Supervisor | None = None  # when the launch supervises
    proxies: dict[str, FaultProxy] = field(default_factory=dict)  # by the process they front
    edge: EdgeProxy | None = None

    @property
    def public_process_url(self) -> str:
        """The gateway's or the monolith's own address (behind the edge proxy, if any)."""
        return self.deployment.urls[self.deployment.topology.edge()]

    @property
    def base_url(self) -> str:
        return self.edge.url if self.edge is not None else self.public_process_url

    def dead(self) -> list[ServerProcess]:
        """Servers that have exited and will not be restarted: any, unsupervised; those the
        supervisor gave up on, supervised."""
        gone = [p for p in self.processes.values() if p.popen.poll() is not None]
        if self.supervisor is None:
            return gone
        return [p for p in gone if p.name in self.supervisor.given_up]

    def replicas(self, process: str) -> list[ServerProcess]:
        """The servers (process groups) running ``process``, first replica first."""
        return [p for name, p in self.processes.items() if split_name(name)[0] == process]

    def database_pids(self) -> list[int]:
        """The PostgreSQL server processes serving this shop's connections (none on SQLite,
        whose work is done inside the shop's own processes)."""
        urls = [url for url in {self.deployment.database_url(c) for c in COMPONENTS}
                if url.startswith(("postgresql://", "postgres://"))]
        if not urls:
            return []
        from shop.storage.postgres import backend_pids  # psycopg only where PostgreSQL is used
        return backend_pids(urls)


def bind_listeners(names: list[str]) -> dict[str, socket.socket]:
    """A bound (not yet listening) loopback socket on a free port for each name.

    Each is handed to its gunicorn as ``fd://N``, so no other program can take the port
    between our choosing it and gunicorn using it, and until gunicorn listens a connection
    is refused rather than left waiting.
    """
    listeners: dict[str, socket.socket] = {}
    try:
        for name in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners[name] = sock
            sock.bind((HOST, 0))
    except OSError:
        for sock in listeners.values():
            sock.close()
        raise
    return listeners


def app_spec(topology: Topology, process: str) -> str:
    if leaf_of(process) is not None:
        return "microservices.leaf:create_app()"
    if process == GATEWAY:
        return "microservices.gateway:create_app()"
    if len(topology.processes) == 1:
        return "monolith.app:create_app()"
    return "microservices.service:create_app()"


def gunicorn_command(app: str, bind: str, settings: LaunchSettings, name: str) -> list[str]:
    """The one way every server is started, by a run or in a container (bench/deploy/serve.py):
    gthread workers that answer gunicorn's own errors as JSON (shop/worker.py), keep-alive,
    the hooks of shop/gunicorn_hooks.py; by the interpreter of the settings' source.
    ``bind``: gunicorn's --bind, ``fd_bind(listener)`` for a socket the launcher bound,
    ``HOST:PORT`` for a server that binds its own."""
    return [python_of(settings), "-m", "gunicorn", "--config", "python:shop.gunicorn_hooks",
            "--worker-class", "shop.worker.JsonErrorWorker",
            "--workers", str(settings.workers), "--threads", str(settings.threads),
            "--bind", bind, "--keep-alive", str(settings.keep_alive_s),
            "--graceful-timeout", str(int(settings.stop_timeout_s)), "--timeout", "60",
            "--log-level", "warning", "--name", f"seambench-{name}", app]


def fd_bind(listener: socket.socket) -> str:
    """gunicorn's --bind for a socket bound here and inherited by the server (``fd://N``)."""
    return f"fd://{listener.fileno()}"


def server_env(deployment: Deployment, name: str, settings: LaunchSettings,
               metrics_dir: Path) -> dict[str, str]:
    """What server ``name`` (a process, a replica of one, a leaf server or the gateway) is
    told through its environment, besides the base one: the deployment, which process it is,
    its threads per worker, where its workers keep their metrics, the allocator's setting."""
    return {DEPLOYMENT_ENV: deployment.to_json(), PROCESS_ENV: split_name(name)[0],
            THREADS_ENV: str(settings.threads), MULTIPROC_ENV: str(metrics_dir),
            "PYTHONUNBUFFERED": "1", **ALLOCATOR_ENV,
            # untraced unless asked: never by a variable the harness's own shell happened to set
            **(settings.trace.env() if settings.trace is not None else {RATIO_ENV: ""})}


def python_of(settings: LaunchSettings) -> str:
    return settings.source.python if settings.source else sys.executable


def source_env(settings: LaunchSettings) -> dict[str, str]:
    """The environment a shop process gets: ours; for another ref's shop, its worktree
    first on the path (it is also the working directory, so its packages shadow ours)."""
    return dict(os.environ) if settings.source is None else child_env(settings.source.root)


def prepare(deployment: Deployment, settings: LaunchSettings) -> None:
    """Create and seed the deployment's databases with the code that will serve them: ours,
    or the source's (its schema may differ), run in its worktree."""
    if settings.source is None:
        prepare_storage(deployment)
        return
    code = ("import sys; from shop.placement import Deployment, prepare_storage; "
            "prepare_storage(Deployment.from_json(sys.stdin.read()))")
    done = subprocess.run([python_of(settings), "-c", code], input=deployment.to_json(),
                          capture_output=True, text=True, cwd=settings.source.root,
                          env=source_env(settings), timeout=settings.ready_timeout_s)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-LOG_TAIL_LINES:])
        raise LaunchError(f"preparing the databases with the shop at "
                          f"{settings.source.describe()} failed:\n{tail}")


def fresh_metrics_dir(data_dir: Path, name: str) -> Path:
    """An empty directory where the workers of server ``name`` keep their metrics (its
    /metrics sums them). Emptied: an earlier run's files in this data dir would add to them."""
    path = data_dir / "metrics" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def start_process(deployment: Deployment, name: str, settings: LaunchSettings, log_dir: Path,
                  listener: socket.socket, again: bool = False) -> ServerProcess:
    """Start server ``name`` (a process, one of its replicas, or the gateway) on ``listener``
    (which the child takes over; we close our copy). ``again``: a restart, which adds to the
    server's log and keeps its metrics files (a dead worker's counts still count)."""
    process, _ = split_name(name)
    url = f"http://{HOST}:{listener.getsockname()[1]}"  # its own, even behind a fault proxy
    settings = process_settings(settings, deployment.topology, process)
    log_path = log_dir / f"{name}.log"
    cmd = gunicorn_command(app_spec(deployment.topology, process), fd_bind(listener), settings,
                           name)
    try:  # the log is this run's only: a failure shows its own tail
        metrics = Path(deployment.data_dir) / "metrics" / name
        env = {**source_env(settings), **server_env(
            deployment, name, settings,
            metrics if again else fresh_metrics_dir(Path(deployment.data_dir), name))}
        popen = spawn_group(cmd, log_path, env, settings.cpus, (listener.fileno(),), append=again,
                            cwd=settings.source.root if settings.source else None)
    finally:
        listener.close()
    return ServerProcess(name, url, log_path, popen)


def is_ready(url: str, timeout_s: float = 1.0) -> bool:
    return answers(url, timeout_s, "/readyz")


def wait_ready(shop: RunningShop, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(shop.processes)
    while pending:
        for proc in shop.dead():
            raise LaunchError(f"during start-up, {proc.exit_report()}")
        for name, proc in list(pending.items()):
            if is_ready(proc.url):
                del pending[name]
        if pending and time.monotonic() > deadline:
            names = ", ".join(sorted(pending))
            tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in pending.values())
            raise LaunchError(f"not ready after {timeout_s:.0f}s: {names}\n{tails}")
        if pending:
            time.sleep(0.05)


def stop(shop: RunningShop, timeout_s: float = 10.0) -> None:
    """SIGTERM every process group, wait, then SIGKILL what is left of each group (the
    supervisor stopped first, so nothing is restarted meanwhile)."""
    if shop.supervisor is not None:
        shop.supervisor.stop()
    stop_groups(([shop.edge.popen] if shop.edge else []) + [proc.popen for proc in shop.processes.values()]
                + [proxy.popen for proxy in shop.proxies.values()], timeout_s)


def start_edge(shop: RunningShop, edge: Edge, log_dir: Path, cpus: tuple[int, ...] | None,
               timeout_s: float) -> EdgeProxy:
    """Start ``edge`` (nginx) on a free loopback port in front of the public process, pinned
    with the shop, and wait until it passes a request through. The port is held by a bound,
    never-listening socket until nginx listens on it (both set SO_REUSEADDR, which Linux
    allows while neither listens), so no other program takes it meanwhile."""
    run_dir = log_dir.parent / "edge"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind((HOST, 0))
        port = hold.getsockname()[1]
        config = run_dir / "nginx.conf"
        config.write_text(nginx_config(port, shop.public_process_url.removeprefix("http://"),
                                       run_dir))
        log_path = log_dir / "edge.log"
        with signals_held():  # a stop between spawning and recording would orphan it
            popen = spawn_group(nginx_command(edge, config), log_path, dict(os.environ), cpus)
            proxy = EdgeProxy(edge, f"http://{HOST}:{port}", log_path, popen)
            shop.edge = proxy
        deadline = time.monotonic() + timeout_s
        while not is_ready(proxy.url):
            if popen.poll() is not None or time.monotonic() > deadline:
                error_log = (run_dir / "error.log")
                tail = error_log.read_text(errors="replace")[-2000:] if error_log.exists() else ""
                raise LaunchError(f"the edge (nginx) did not start: exit {popen.poll()}\n"
                                  f"{tail or ServerProcess('edge', '', log_path, popen).log_tail()}")
            time.sleep(0.02)
        return proxy
    finally:
        hold.close()


def start_proxy(shop: RunningShop, process: str, listener: socket.socket, log_dir: Path,
                cpus: tuple[int, ...] | None) -> FaultProxy:
    """A fault proxy on ``listener`` forwarding to ``process``'s server, passing at first."""
    state = Path(shop.deployment.data_dir) / f"{PROXY_PREFIX}{process}.json"
    write_state(state, "pass")
    target = shop.processes[process].url.removeprefix("http://")
    cmd = [sys.executable, "-m", "bench.system.faultproxy", "--listen-fd", str(listener.fileno()),
           "--target", target, "--state", str(state)]
    try:
        popen = spawn_group(cmd, log_dir / f"{PROXY_PREFIX}{process}.log", child_env(), cpus,
                            (listener.fileno(),))
    finally:
        listener.close()
    url = shop.deployment.urls[process]
    return FaultProxy(process, url, state, popen)


def restart_process(shop: RunningShop, name: str, settings: LaunchSettings, log_dir: Path) -> None:
    """Start server ``name`` again on its own port (callers keep their URLs), after its
    process group is gone: whatever its leader left behind is killed first."""
    old = shop.processes[name]
    stop_groups([old.popen], timeout_s=0)
    port = address_of(old.url)[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The dead server's accepted connections may linger in TIME_WAIT on this port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    shop.processes[name] = start_process(shop.deployment, name, settings, log_dir, sock,
                                         again=True)


def supervise(shop: RunningShop, settings: LaunchSettings, log_dir: Path) -> Supervisor:
    """Start restarting the shop's servers as they die."""
    supervisor = Supervisor(
        list(shop.processes), exited=lambda name: shop.processes[name].popen.poll(),
        restart=lambda name: restart_process(shop, name, settings, log_dir),
        # alive, not /readyz: a server is back even while a dependency of its own is down
        ready=lambda name: answers(shop.processes[name].url, 0.5, "/healthz"))
    shop.supervisor = supervisor
    supervisor.start()
    return supervisor


def proxied_processes(topology: Topology, settings: LaunchSettings) -> list[str]:
    """The processes to put behind a fault proxy: those asked for that the topology has and
    that are called over hops (not the public edge). Raises LaunchError for a replicated one."""
    chosen = [p for p in settings.proxied if p in topology.processes and p != topology.edge()]
    for proc in chosen:
        if topology.scale_of(proc).replicas > 1:
            raise LaunchError(f"process {proc!r} is replicated: a fault proxy fronts one server")
    return chosen


def process_names(topology: Topology) -> list[str]:
    """The name of every server the topology runs, in start order: each process (its second
    and later replicas as ``NAME#2``, ``NAME#3``, ...), then the gateway."""
    return [*(replica_name(proc, i) for proc in topology.processes
              for i in range(topology.scale_of(proc).replicas)),
            *topology.leaf_servers(), *([GATEWAY] if topology.gateway else [])]


def replica_name(process: str, index: int) -> str:
    """The server name of replica ``index`` (from 0) of ``process``: the first keeps the
    process's own name, so a topology without replicas names its servers as before."""
    return process if index == 0 else f"{process}{REPLICA_MARK}{index + 1}"


def split_name(name: str) -> tuple[str, int]:
    """A server name's process (or the gateway) and replica index: the inverse of
    ``replica_name``."""
    process, _, nth = name.partition(REPLICA_MARK)
    return process, int(nth) - 1 if nth else 0


def process_settings(settings: LaunchSettings, topology: Topology, process: str) -> LaunchSettings:
    """``settings`` with the workers and threads the topology gives ``process``; the
    gateway, and a process whose table sets neither, keep the launch's. A leaf server has
    one worker and the threads of ``[leaves]``."""
    if leaf_of(process) is not None:
        return replace(settings, workers=1, threads=topology.leaves.threads)
    if process not in topology.processes:
        return settings
    scale = topology.scale_of(process)
    return replace(settings, workers=scale.workers or settings.workers,
                   threads=scale.threads or settings.threads)


def new_deployment(topology: Topology, data_dir: Path, settings: LaunchSettings,
                   listeners: dict[str, socket.socket]) -> Deployment:
    """The deployment of servers on ``listeners``; a process behind a fault proxy (a
    ``proxy:NAME`` listener) is given to its callers at the proxy's address."""
    url = {name: f"http://{HOST}:{sock.getsockname()[1]}" for name, sock in listeners.items()}
    for name in [n for n in url if n.startswith(PROXY_PREFIX)]:
        url[name.removeprefix(PROXY_PREFIX)] = url.pop(name)
    replicas = {proc: [url[replica_name(proc, i)] for i in range(topology.scale_of(proc).replicas)]
                for proc in topology.processes if topology.scale_of(proc).replicas > 1}
    return deployment_of(topology, data_dir, settings,
                         {name: u for name, u in url.items() if REPLICA_MARK not in name},
                         replicas, secrets.token_urlsafe(24), secrets.token_urlsafe(32))


def deployment_of(topology: Topology, data_dir: Path, settings: LaunchSettings,
                  urls: dict[str, str], replica_urls: dict[str, list[str]],
                  service_credential: str, token_secret: str) -> Deployment:
    """The deployment of ``topology`` under ``settings``, its servers at ``urls`` (a
    replicated process's every replica in ``replica_urls``), with these secrets."""
    return Deployment(topology=topology, data_dir=str(data_dir),
                      service_credential=service_credential, token_secret=token_secret,
                      urls=urls, replica_urls=replica_urls,
                      scrypt_n=settings.scrypt_n, search=settings.search, hop=settings.hop,
                      leaf_delays=dict(settings.leaf_delays),
                      outbox_lease_s=settings.outbox_lease_s)


@contextmanager
def launch(topology: Topology, settings: LaunchSettings = LaunchSettings(),
           data_dir: Path | None = None) -> Iterator[RunningShop]:
    """Start ``topology``; stop every process on exit, whatever ends the block.

    With no ``data_dir`` the databases live in a temporary directory removed afterwards.
    """
    owned_dir = data_dir is None
    data_path = Path(tempfile.mkdtemp(prefix="seambench-")) if owned_dir else Path(data_dir)
    log_dir = data_path / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    proxied = proxied_processes(topology, settings)
    listeners = bind_listeners(process_names(topology) + [PROXY_PREFIX + p for p in proxied])
    deployment = new_deployment(topology, data_path, settings, listeners)
    shop = RunningShop(deployment)
    try:
        prepare(deployment, settings)
        for name in process_names(topology):
            with signals_held():  # a stop between spawning and recording would orphan it
                shop.processes[name] = start_process(deployment, name, settings, log_dir,
                                                     listeners.pop(name))
        for proc in proxied:
            with signals_held():
                shop.proxies[proc] = start_proxy(shop, proc, listeners.pop(PROXY_PREFIX + proc),
                                                 log_dir, settings.cpus)
        wait_ready(shop, settings.ready_timeout_s)
        try:
            edge = resolve_edge(settings.edge)
        except EdgeError as exc:
            raise LaunchError(str(exc)) from None
        if edge.kind == "nginx":
            start_edge(shop, edge, log_dir, settings.cpus, settings.ready_timeout_s)
        if settings.supervise:
            supervise(shop, settings, log_dir)
        yield shop
    finally:
        with signals_held():  # a second Ctrl-C must not cut the clean-up short
            for sock in listeners.values():  # those of processes never started
                sock.close()
            stop(shop, settings.stop_timeout_s)
            if owned_dir:
                try:
                    discard_storage(deployment)
                except DomainError as exc:  # a server gone away: nothing left to drop there
                    log.warning("could not drop this run's databases or queue: %s", exc)
                shutil.rmtree(data_path, ignore_errors=True)
