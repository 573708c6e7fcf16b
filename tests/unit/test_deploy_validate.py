"""Every shipped topology's deployment, checked by the engines' own validators, offline:
the Kubernetes manifests against the API's schemas of a pinned Kubernetes version
(kubernetes-validate, strict: an unknown field is an error), the compose files by
docker-compose itself (`config -q`; skipped where it is not installed, failed under CI=true)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bench.deploy.command import COMPOSE_FILE, MANIFEST_FILE, write_deployment
from shop.topology import built_in_topologies
from tests.servers import require_program

KUBERNETES_VERSION = "1.31.0"  # one kubernetes-validate>=1.31 ships schemas for
# Wrapped, not bare: a bare placement name as a parameter puts a test in the full tier.
SHIPPED = [(name,) for name in sorted(built_in_topologies())]


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda s: s[0])
def test_every_manifest_passes_the_kubernetes_schemas(shipped, tmp_path):
    write_deployment(shipped[0], "kubernetes", tmp_path, "registry.example/seambench:1")
    objects = [o for o in yaml.safe_load_all((tmp_path / MANIFEST_FILE).read_text()) if o]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"}
    for thing in objects:
        try:
            kubernetes_validate.validate(thing, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            pytest.fail(f"{thing['kind']}/{thing['metadata']['name']}: {where}: {exc.message}")


def test_the_validator_refuses_a_broken_manifest():
    """The check above can fail: a probe with a misspelt field does not pass."""
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                  "metadata": {"labels": {"a": "b"}},
                  "spec": {"containers": [{"name": "x", "image": "i",
                                           "readinessProbe": {"httpGet": {"pth": "/readyz",
                                                                          "port": 1}}}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def compose_config(directory: Path) -> subprocess.CompletedProcess:
    require_program("docker-compose", "apt-get install docker-compose")
    return subprocess.run([shutil.which("docker-compose"), "-f", str(directory / COMPOSE_FILE),
                           "config", "-q"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda s: s[0])
def test_every_compose_file_passes_docker_compose_config(shipped, tmp_path):
    write_deployment(shipped[0], "compose", tmp_path, "seambench:1")
    done = compose_config(tmp_path)
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_a_broken_file(tmp_path):
    """The check above can fail: a service with a misspelt key does not pass."""
    write_deployment("monolith", "compose", tmp_path, "seambench:1")
    path = tmp_path / COMPOSE_FILE
    path.write_text(path.read_text().replace("network_mode:", "network_mod:"))
    assert compose_config(tmp_path).returncode != 0
