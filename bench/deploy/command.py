"""``seambench deploy`` and ``seambench serve``: the command-line ends of bench/deploy/
(bench/cli.py adds them to ``seambench``). Unusable input is one line and exit 2, as for
every command (bench/exitcodes.py)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import yaml

from bench.deploy import compose, kubernetes
from bench.deploy.serve import ServeError, serve
from bench.deploy.servers import (BIND_ENV, DATA_DIR, DATA_DIR_ENV, ENV_FILE, POD_BIND, SECRET_ENVS,
                                  TOPOLOGY_ENV, TOPOLOGY_FILE, URLS_ENV, default_image,
                                  deployment_secrets, named_text, workloads, write_private)
from bench.system.deployed import target_text
from shop.topology import (Topology, TopologyError, check_installed, load_topology,
                           parse_quantities, topology_text)

TARGETS = ("compose", "kubernetes")
COMPOSE_FILE = "docker-compose.yml"
MANIFEST_FILE = "kubernetes.yaml"
TARGET_FILE = "target.toml"
CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")  # docker's --cpuset-cpus: "1", "0,2-3"
DEFAULT_BASE_PORT = 18000
PORT_MAX = 65535


class LiteralDumper(yaml.SafeDumper):
    """YAML whose multi-line strings (the topology file in the ConfigMap) are blocks a person
    can read and edit, not one quoted line of ``\\n``, and where an object used twice (a
    Deployment's labels and its selector) is written twice, not as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


LiteralDumper.add_representer(str, _represent_text)


def yaml_text(documents: list[dict[str, Any]], header: str) -> str:
    """``documents`` as one YAML stream, keys in the order given, after ``header`` (a
    comment, one ``#`` line per line of it)."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + yaml.dump_all(documents, Dumper=LiteralDumper, sort_keys=False,
                                   default_flow_style=False, width=4096)


def write_deployment(name_or_path: str, target: str, out: Path, image: str,
                     base_port: int = DEFAULT_BASE_PORT, cpu: str | None = None,
                     memory: str | None = None, public_service: str = "ClusterIP",
                     cpuset: str | None = None) -> tuple[list[Path], list[str]]:
    """Write topology ``name_or_path``'s deployment for ``target`` into ``out`` (made if
    missing): the files written, and warnings about what will not work as written. Under
    compose, also the target file (``TARGET_FILE``) that ``seambench run --target`` reads. The
    secrets are those of ``out``'s env file, made there the first time. Raises
    TopologyError for an unusable topology, ValueError for a ``base_port`` that leaves a
    server no port, OSError for an unwritable ``out``."""
    topology = load_topology(name_or_path)
    text = named_text(topology_text(name_or_path)[0], topology)
    if target == "compose" and base_port + len(compose.server_ports(topology, 0)) - 1 > PORT_MAX:
        raise ValueError(f"{topology.name}'s servers need ports past {PORT_MAX} from {base_port}")
    out.mkdir(parents=True, exist_ok=True)
    secrets = deployment_secrets(out)
    command = f"seambench deploy {name_or_path} --to {target}"
    if target == "compose":
        (out / TOPOLOGY_FILE).write_text(text, encoding="utf-8")
        document = compose.compose_document(topology, image, base_port, cpuset)
        urls = compose.server_urls(topology, base_port)
        public = next(iter(urls.values()))
        header = (f"Written by `{command}`. Start: docker-compose -f {COMPOSE_FILE} up -d\n"
                  f"The shop's public address: {public}")
        path = out / COMPOSE_FILE
        path.write_text(yaml_text([document], header), encoding="utf-8")
        (out / TARGET_FILE).write_text(target_text(
            f"{topology.name}-compose", TOPOLOGY_FILE, public,
            {server: f"{url}/metrics" for server, url in urls.items()}, ENV_FILE,
            f"Written by `{command}`: this deployment as a placement of\n"
            f"`seambench run --target {TARGET_FILE}` (docs/kubernetes.md)."), encoding="utf-8")
        return [path, out / TOPOLOGY_FILE, out / ENV_FILE, out / TARGET_FILE], []
    objects = kubernetes.manifests(topology, text, workloads(topology, cpu, memory), secrets,
                                   image, public_service)
    header = (f"Written by `{command}`. Apply: kubectl apply -f {MANIFEST_FILE}\n"
              f"Edit the database and broker URLs in the ConfigMap's {TOPOLOGY_FILE} to your "
              f"cluster's. Holds the deployment's secrets: keep it private.")
    path = out / MANIFEST_FILE
    write_private(path, yaml_text(objects, header))  # it holds the Secret
    return [path, out / ENV_FILE], kubernetes.cluster_warnings(topology)


def _quantity(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_quantities({param.name: value}, f"--{param.name}", TopologyError)[param.name]
    except TopologyError as exc:
        raise click.BadParameter(str(exc).partition(": ")[2]) from None


@click.command("deploy")
@click.argument("topology")
@click.option("--to", "target", type=click.Choice(TARGETS), required=True,
              help="compose: a docker-compose file, every service on the host's network; "
                   "kubernetes: a namespace with a Deployment and a Service per server")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="write the files here (made if missing; its .env keeps the secrets)")
@click.option("--image", default=None, help="the image every server runs (default: "
              "seambench:VERSION, as scripts/build-image tags it)")
@click.option("--base-port", type=click.IntRange(1, PORT_MAX), default=DEFAULT_BASE_PORT,
              show_default=True, help="compose: the public server's loopback port; the others "
              "follow, one each")
@click.option("--cpu", callback=_quantity, default=None, help="kubernetes: the CPU of each "
              "server the topology does not size, e.g. 500m (its pods' request and limit)")
@click.option("--memory", callback=_quantity, default=None,
              help="kubernetes: the memory of each server the topology does not size, e.g. 256Mi")
@click.option("--cpuset", default=None, metavar="CPUS",
              help="compose: the CPUs every container may run on (e.g. 1, or 2-3), as "
                   "seambench run pins the placements it starts, to compare them fairly")
@click.option("--public-service", type=click.Choice(kubernetes.SERVICE_TYPES), default="ClusterIP",
              show_default=True, help="kubernetes: the type of the public server's Service "
              "(LoadBalancer or NodePort to load it from outside the cluster)")
def deploy(topology: str, target: str, out: Path, image: str | None, base_port: int,
           cpu: str | None, memory: str | None, cpuset: str | None, public_service: str) -> None:
    """Write TOPOLOGY's deployment (a built-in name or a .toml file): a docker-compose file,
    or Kubernetes manifests, each server running `seambench serve NAME` in the one image
    (Dockerfile, scripts/build-image). Prints the files written."""
    try:
        if cpuset is not None and not CPUSET.fullmatch(cpuset):
            raise click.BadParameter(f"{cpuset!r}: CPU numbers and ranges, e.g. 1 or 0,2-3",
                                     param_hint="--cpuset")
        written, warnings = write_deployment(topology, target, out, image or default_image(),
                                             base_port, cpu, memory, public_service, cpuset)
    except TopologyError as exc:
        raise click.BadParameter(str(exc), param_hint="TOPOLOGY") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-port") from None
    except OSError as exc:
        raise click.BadParameter(f"{out}: cannot write there: {exc.strerror or exc}",
                                 param_hint="--out") from None
    for warning in warnings:
        click.echo(f"seambench deploy: warning: {warning}", err=True)
    for path in written:
        click.echo(path)


def _topology(ctx: click.Context, param: click.Parameter, value: str) -> Topology:
    try:
        topology = load_topology(value)
        check_installed(topology)
        return topology
    except TopologyError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("serve")
@click.argument("name")
@click.option("--topology", envvar=TOPOLOGY_ENV, show_envvar=True, required=True,
              callback=_topology, help="a built-in topology or a .toml file")
@click.option("--urls", envvar=URLS_ENV, show_envvar=True, default="{}",
              help="JSON: each process, leaf server and the gateway -> its base URL, or a list "
                   "of URLs, one per replica server")
@click.option("--bind", envvar=BIND_ENV, show_envvar=True, default=POD_BIND, show_default=True,
              help="HOST:PORT to listen on (127.0.0.1:PORT on the host's network)")
@click.option("--data-dir", envvar=DATA_DIR_ENV, show_envvar=True, default=DATA_DIR,
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="databases and metrics files")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="gunicorn worker processes, unless the topology sets them")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
              help="gthread threads per worker, unless the topology sets them")
def serve_command(name: str, topology: Topology, urls: str, bind: str, data_dir: Path,
                  workers: int, threads: int) -> None:
    """Start server NAME of a deployed topology (a process, `billing#2`, `leaf.3.1` or
    `gateway`) in the foreground, as `seambench up` starts it: its databases prepared, then
    gunicorn in its place. The secrets are read from SEAMBENCH_TOKEN_SECRET and
    SEAMBENCH_SERVICE_CREDENTIAL (the env file or Secret `seambench deploy` writes)."""
    missing = [env for env in SECRET_ENVS if not os.environ.get(env)]
    if missing:
        raise click.UsageError(f"{' and '.join(missing)} must be set (seambench deploy writes "
                               f"them to its {ENV_FILE} and Secret)")
    secret, credential = (os.environ[env] for env in SECRET_ENVS)
    try:
        serve(topology, name, bind, data_dir, urls, secret, credential, workers, threads)
    except ServeError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start {name!r}: {exc}") from None
