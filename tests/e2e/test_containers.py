"""The shop in real containers, as a user deploys it: the image built by scripts/build-image
(from the local Debian base, made once and kept), the monolith and the split shop each
started by `docker-compose up -d` from `seambench deploy`'s file, every server on the host's
network. The contract suite's core checks run through the public address; every server's
/metrics answers; then `down -v`, and nothing of the project is left: no container, no
network, no volume. Skipped with the reason where Docker cannot be had (failed under CI=true).

``composed`` is a running placement (``ComposedShop``: its public ``base_url``, every
server's ``metrics_urls`` by the launcher's server names, its ``service_credential``), for
any test that aims at a deployed shop.
"""
from __future__ import annotations

import csv
import json
import os
import random
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bench.deploy.command import COMPOSE_FILE, write_deployment
from bench.deploy.compose import server_urls
from bench.deploy.servers import CREDENTIAL_ENV, ENV_FILE, read_env_file
from shop.hops import SERVICE_HEADER
from shop.topology import Topology, load_topology
from tests.contract import conftest as contract_fixtures
from tests.contract import test_shop_contract, test_shop_queries
from tests.placements import HttpApi
from tests.e2e.test_launcher import SEAMBENCH
from tests.servers import require_docker, require_program

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "seambench:e2e"  # rebuilt every session from this tree; the one it replaces is pruned
BASE_IMAGE = "seambench-base:bookworm"
BUILD_TIMEOUT_S = 900  # a cold base (about a minute) and the wheels and image (about two)
UP_TIMEOUT_S = 240
READY_TIMEOUT_S = 90
PROJECT_LABEL = "com.docker.compose.project"

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + UP_TIMEOUT_S)

# The contract suite's core checks, collected here too (pytest collects the test functions
# and fixtures a module holds), with its user, other_user and sku fixtures, all over this
# module's api: the deployed shop's public address.
FROM_THE_CONTRACT = {
    contract_fixtures: ("user", "other_user", "sku"),
    test_shop_contract: ("test_register_and_login", "test_search_ranks_results",
                         "test_scatter_gathers_the_best_hits_of_the_first_n_shards",
                         "test_topup_checkout_order_and_inbox",
                         "test_idempotent_replay_never_charges_twice", "test_checkout_failures",
                         "test_cross_user_isolation", "test_token_required",
                         "test_unknown_routes_and_methods_are_json",
                         "test_internal_endpoints_are_not_public", "test_health_endpoints"),
    test_shop_queries: ("test_the_chain_walks_the_path_the_hop_counts_follow",),
}
globals().update({name: getattr(module, name) for module, names in FROM_THE_CONTRACT.items()
                  for name in names})


@dataclass(frozen=True)
class ComposedShop:
    """A placement running under docker-compose."""

    topology: Topology
    project: str  # the compose project: every container, network and volume is labelled so
    compose_file: Path
    urls: dict[str, str]  # each server's base URL on the host, the public one first
    service_credential: str  # what the internal endpoints ask for (a target's credential)

    @property
    def base_url(self) -> str:
        return next(iter(self.urls.values()))

    @property
    def metrics_urls(self) -> dict[str, str]:
        return {name: f"{url}/metrics" for name, url in self.urls.items()}


def docker_compose(shop: ComposedShop, *args: str, timeout_s: float = UP_TIMEOUT_S
                   ) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "-p", shop.project, "-f", str(shop.compose_file),
                           *args], capture_output=True, text=True, timeout=timeout_s)


def leftovers(project: str) -> list[str]:
    """Every container, network and volume of compose project ``project``."""
    found = []
    for kind, listing in (("container", ["ps", "-a"]), ("network", ["network", "ls"]),
                          ("volume", ["volume", "ls"])):
        done = subprocess.run(["docker", *listing, "-q", "--filter",
                               f"label={PROJECT_LABEL}={project}"],
                              capture_output=True, text=True, timeout=60, check=True)
        found += [f"{kind} {line}" for line in done.stdout.split()]
    return found


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for _ in range(200):
        base = random.randrange(20_000, 40_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.fixture(scope="session")
def image() -> str:
    """The image of this tree, built as the docs say; its base only when missing."""
    docker = require_docker()
    require_program("docker-compose", "Debian: apt-get install docker-compose")
    if subprocess.run([docker, "image", "inspect", BASE_IMAGE], capture_output=True).returncode:
        require_program("debootstrap", "Debian: apt-get install debootstrap")
    started = time.monotonic()
    done = subprocess.run([str(ROOT / "scripts" / "build-image")], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, env={**os.environ, "TAG": IMAGE})
    assert done.returncode == 0 and done.stdout.split()[-1] == IMAGE, done.stderr[-3000:]
    print(f"built {IMAGE} in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture(scope="module", params=["monolith", "microservices"])
def composed(request, image, tmp_path_factory) -> ComposedShop:
    """Placement ``request.param`` up under docker-compose and ready at its public address;
    taken down with its volumes afterwards, and nothing of it may be left."""
    topology = load_topology(request.param)
    out = tmp_path_factory.mktemp(f"compose-{request.param}")
    base_port = free_ports(len(server_urls(topology, 0)))
    write_deployment(request.param, "compose", out, image, base_port)
    shop = ComposedShop(topology, f"seambench-e2e-{os.getpid()}-{request.param}",
                        out / COMPOSE_FILE, server_urls(topology, base_port),
                        read_env_file(out / ENV_FILE)[CREDENTIAL_ENV])
    try:
        up = docker_compose(shop, "up", "-d")
        assert up.returncode == 0, up.stderr[-3000:] + docker_compose(shop, "logs").stdout[-3000:]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(shop.base_url):
            assert time.monotonic() < deadline, docker_compose(shop, "logs").stdout[-3000:]
            time.sleep(0.2)
        yield shop
    finally:
        down = docker_compose(shop, "down", "-v", "--timeout", "20")
        left = leftovers(shop.project)
        assert down.returncode == 0 and not left, (down.stderr[-2000:], left)


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def api(composed) -> HttpApi:
    client = HttpApi(composed.base_url)
    yield client
    client.close()


def test_every_server_runs_in_a_container_on_the_hosts_network(composed):
    ids = subprocess.run(["docker", "ps", "-q", "--filter",
                          f"label={PROJECT_LABEL}={composed.project}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) == len(composed.urls)
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                          text=True, check=True).stdout)
    assert {c["HostConfig"]["NetworkMode"] for c in inspected} == {"host"}
    assert {c["State"]["Health"]["Status"] for c in inspected} <= {"healthy", "starting"}
    servers = {c["Config"]["Labels"]["io.seambench.server"] for c in inspected}
    assert servers == set(composed.urls)


def test_the_deployments_credential_opens_the_internal_endpoints(composed):
    """What a harness aimed at the deployment needs: the servers take its credential."""
    auth = composed.urls[composed.topology.process_of("auth")]

    def verify(credential: str) -> int:
        return requests.post(f"{auth}/internal/auth/verify", json={"token": "not-a-token"},
                             headers={SERVICE_HEADER: credential}, timeout=10).status_code

    assert verify("a guess") == 403
    assert verify(composed.service_credential) == 401  # past the credential: a bad token


def test_every_server_serves_its_metrics_with_its_cpu_and_memory(composed, user):
    for name, url in composed.metrics_urls.items():
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, name
        assert "process_cpu_seconds_total" in response.text, name
        assert "process_resident_memory_bytes" in response.text, name
        assert "seambench_" in response.text, name


def test_seambench_run_measures_the_deployment_as_a_target(composed, tmp_path):
    """`seambench run --target` against the composed shop, through the target file `deploy`
    wrote beside it (its credential read from the .env there): the journey measured from
    HTTP and /metrics alone, nothing of the deployment started or stopped."""
    target = composed.compose_file.parent / "target.toml"
    done = subprocess.run([*SEAMBENCH, "run", "--profile", "smoke", "--target", str(target),
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env={k: v for k, v in os.environ.items()
                                            if k != CREDENTIAL_ENV})
    [run_dir] = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert done.returncode == summary["exit_code"] in (0, 3), done.stderr[-3000:]
    name = f"{composed.topology.name}-compose"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and list(manifest["targets"]) == [name]
    assert manifest["targets"][name]["openapi_sha256"]
    with open(run_dir / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    assert steps and {s["placement"] for s in steps} == {name}
    for step in steps:
        assert int(step["completed"]) > 0, step
        if "resources_unread" not in step["invalid_codes"]:
            assert float(step["system_cpu_s"]) > 0 and float(step["system_rss_mib"]) > 20, step
    assert ready(composed.base_url)  # still up: the run stopped nothing of it
