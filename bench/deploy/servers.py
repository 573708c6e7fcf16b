"""What every deployment target shares: the servers a topology runs, the names a platform
allows them, the environment ``seambench serve`` reads, and the deployment's secrets.

A *server* is named as the launcher names it (``bench/system/launcher.py``): a process
(``billing``), a further replica of one (``billing#2``), a leaf server (``leaf.3.1``) or
the gateway.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import tomllib
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.system.launcher import process_names
from shop.topology import GATEWAY, Topology, leaf_of

# What ``seambench serve`` reads from its environment (each is also an option of it, but
# the secrets, which a command line would show to every user of the machine).
TOPOLOGY_ENV = "SEAMBENCH_TOPOLOGY"  # a built-in topology's name or a .toml file's path
URLS_ENV = "SEAMBENCH_URLS"  # JSON: process, leaf server or gateway -> base URL, or a list
#                              of base URLs, one per replica server
TOKEN_SECRET_ENV = "SEAMBENCH_TOKEN_SECRET"  # signs the users' tokens (auth)
CREDENTIAL_ENV = "SEAMBENCH_SERVICE_CREDENTIAL"  # what a process shows another it calls
DATA_DIR_ENV = "SEAMBENCH_DATA_DIR"  # the databases and metrics files
BIND_ENV = "SEAMBENCH_BIND"  # HOST:PORT the server listens on
SECRET_ENVS = (TOKEN_SECRET_ENV, CREDENTIAL_ENV)

POD_PORT = 8000  # what a server listens on in a pod of its own
POD_BIND = f"0.0.0.0:{POD_PORT}"
CONFIG_DIR = "/etc/seambench"  # where the topology file is mounted in a container
TOPOLOGY_FILE = "topology.toml"
DATA_DIR = "/data"  # the image's data volume
ENV_FILE = ".env"  # the secrets, in the output directory of ``seambench deploy``
LABEL_MAX = 63  # a DNS label's length (RFC 1123), what Kubernetes and compose both accept


def default_image() -> str:
    """The image ``scripts/build-image`` tags: ``seambench:VERSION`` of this installation."""
    return f"seambench:{metadata.version('seambench')}"


@dataclass(frozen=True)
class Workload:
    """One thing a platform runs as a unit: a process of the topology with all its
    replicas, a leaf server, or the gateway; and the resources of each replica (Kubernetes
    quantities, None where neither the topology nor the deployment sets one)."""

    server: str  # the launcher's name of its first server: "billing", "leaf.3.1", "gateway"
    replicas: int
    cpu: str | None = None
    memory: str | None = None


def public_first(topology: Topology, names: list[str]) -> list[str]:
    """``names`` with the server of the public API first (the gateway or the only process),
    so a deployment's public address is its first."""
    edge = topology.edge()
    return [edge, *(n for n in names if n != edge)] if edge in names else list(names)


def server_names(topology: Topology) -> list[str]:
    """Every server ``topology`` runs, each replica apart (``billing#2``), public first."""
    return public_first(topology, process_names(topology))


def workloads(topology: Topology, cpu: str | None = None,
              memory: str | None = None) -> list[Workload]:
    """The topology's processes (with their replicas), leaf servers and gateway, public
    first. ``cpu`` and ``memory`` size those the topology does not (the gateway's, say)."""
    out = []
    for name in public_first(topology, [*topology.processes, *topology.leaf_servers(),
                                        *([GATEWAY] if topology.gateway else [])]):
        if name in topology.processes:
            scale = topology.scale_of(name)
            out.append(Workload(name, scale.replicas, scale.cpu or cpu, scale.memory or memory))
        elif leaf_of(name) is not None:
            leaves = topology.leaves
            out.append(Workload(name, 1, leaves.cpu or cpu, leaves.memory or memory))
        else:
            out.append(Workload(name, 1, cpu, memory))
    return out


def readable_label(name: str) -> str:
    """``name`` as a DNS label: lowercase letters, digits and '-', starting with a letter,
    at most ``LABEL_MAX`` characters (``leaf.3.1`` -> ``leaf-3-1``, ``billing#2`` ->
    ``billing-2``). Distinct names may meet: ``dns_labels`` keeps them apart."""
    label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not label[:1].isalpha():
        label = f"s-{label}".rstrip("-")
    return label[:LABEL_MAX].rstrip("-")


def dns_labels(names: list[str]) -> dict[str, str]:
    """A distinct DNS-1035 label for each name (valid for a Kubernetes Service, Deployment
    or namespace and a compose service), a function of the set of names alone: the
    readable form, and where two names' readable forms meet (``a_b`` and ``a-b``) or a
    name is too long for a label, a short hash of the name itself after it."""
    readable = {name: readable_label(name) for name in names}
    counts = Counter(readable.values())
    out = {}
    for name, label in readable.items():
        if (counts[label] > 1 and label != name) or len(name) > LABEL_MAX:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            label = f"{label[:LABEL_MAX - 9].rstrip('-')}-{digest}"
        out[name] = label
    if len(set(out.values())) != len(out):  # only a name equal to another's hashed form
        raise ValueError(f"names {sorted(names)} give no distinct DNS labels")
    return out


def named_text(text: str, topology: Topology) -> str:
    """A topology file's ``text`` as deployed: its ``name`` stated at the top when the file
    left it to its file name (the deployed file is called topology.toml)."""
    if "name" in tomllib.loads(text):
        return text
    return f"name = {topology.name!r}  # the name of the file it was deployed from\n{text}"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (blank lines and ``#`` comments skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, equals, value = line.strip().partition("=")
        if equals and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def deployment_secrets(out_dir: Path) -> dict[str, str]:
    """The token secret and service credential of the deployment in ``out_dir``, by their
    ``serve`` variables: those of its env file when it has them (so deploying again keeps
    the users' tokens valid), else new random ones, written there readable by the owner
    only. Raises OSError when the file cannot be read or written."""
    path = out_dir / ENV_FILE
    found = read_env_file(path) if path.exists() else {}
    wanted = {key: found.get(key) or secrets.token_urlsafe(32) for key in SECRET_ENVS}
    if any(found.get(key) != value for key, value in wanted.items()):
        body = "".join(f"{key}={value}\n" for key, value in {**found, **wanted}.items())
        write_private(path, "# seambench deploy: the deployment's secrets (kept when it "
                            "deploys again)\n" + body)
    return wanted


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (it holds secrets),
    whatever mode the file had. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o600)
        out.write(text)
