"""`seambench deploy`'s files, read back as data: compose services on the host's network,
each on a loopback port of its own; Kubernetes objects named as the API allows, with the
topology's replicas and resources, the probes, the scrape annotations, the secrets only in
the Secret; resources in the topology checked; bad input refused in one line."""
from __future__ import annotations

import json
import re
import stat
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from bench import exitcodes
from bench.deploy import kubernetes
from bench.deploy.command import COMPOSE_FILE, MANIFEST_FILE, write_deployment
from bench.deploy.servers import (BIND_ENV, CREDENTIAL_ENV, TOKEN_SECRET_ENV, URLS_ENV, dns_labels,
                                  read_env_file, server_names, workloads)
from shop.topology import (GATEWAY, LeafPlan, ProcessScale, Topology, TopologyError,
                           built_in_topologies, load_topology, parse_topology)
from tests.unit.test_cli_conventions import in_process

# Loaded, not named: a bare placement name as a parameter puts a test in the full tier
# (tests/conftest.py), and these read files only.
SHIPPED = [load_topology(name) for name in sorted(built_in_topologies())]
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
WHOLE_SHOP = ["auth", "billing", "search", "notify"]


def sized_topology(tmp_path: Path) -> Path:
    """A split whose process names need mapping, sized per process, with leaf servers."""
    path = tmp_path / "sized.toml"
    path.write_text('name = "sized"\ngateway = true\nshard_calls = "http"\n'
                    '[leaves]\nshards = 2\nreplicas = 2\nprocesses = true\ncpu = "100m"\n'
                    '[process.order_desk]\ncomponents = ["auth", "billing"]\n'
                    'cpu = "1500m"\nmemory = "512Mi"\nreplicas = 3\n'
                    '[process.rest]\ncomponents = ["search", "notify"]\n')
    return path


def read_back(files: list[Path], name: str) -> list[dict]:
    path = next(p for p in files if p.name == name)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- resources in the topology -------------------------------------------------------------

def test_a_process_table_may_give_its_pods_cpu_and_memory():
    topo = parse_topology({"process": {"app": {"components": WHOLE_SHOP, "cpu": "500m",
                                               "memory": "256Mi"}}}, "t.toml")
    assert topo.scale_of("app") == ProcessScale(cpu="500m", memory="256Mi")
    assert Topology.from_dict(json.loads(json.dumps(asdict(topo)))) == topo  # as a run keeps it


@pytest.mark.parametrize("key,value", [("cpu", "0"), ("cpu", "0m"), ("cpu", 2), ("cpu", "1.5m"),
                                       ("cpu", "-1"), ("cpu", "two"), ("memory", "256MB"),
                                       ("memory", "0Mi"), ("memory", 256)])
def test_a_quantity_kubernetes_would_refuse_is_refused_with_the_key_named(key, value):
    with pytest.raises(TopologyError, match=f"process 'app': {key} must be a positive Kubernetes"):
        parse_topology({"process": {"app": {"components": WHOLE_SHOP, key: value}}}, "t.toml")


def test_leaf_servers_may_be_sized_only_when_they_are_servers():
    doc = {"gateway": True, "shard_calls": "http", "process": {"app": {"components": WHOLE_SHOP}},
           "leaves": {"processes": True, "cpu": "250m", "memory": "64Mi"}}
    assert parse_topology(doc, "t.toml").leaves == LeafPlan(processes=True, cpu="250m",
                                                            memory="64Mi")
    doc["leaves"]["processes"] = False
    with pytest.raises(TopologyError, match="need processes = true"):
        parse_topology(doc, "t.toml")


# --- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("topo", SHIPPED, ids=lambda t: t.name)
def test_every_server_of_every_shipped_topology_gets_a_distinct_dns_label(topo):
    labels = dns_labels(server_names(topo))
    assert all(DNS_1035.fullmatch(label) for label in labels.values()), labels
    assert len(set(labels.values())) == len(labels)
    assert kubernetes.namespace_of(topo) == f"seambench-{topo.name}"


def test_names_map_readably_and_apart_when_their_readable_forms_meet():
    assert dns_labels(["leaf.3.1", "billing#2", GATEWAY]) == {
        "leaf.3.1": "leaf-3-1", "billing#2": "billing-2", GATEWAY: GATEWAY}
    met = dns_labels(["a_b", "a-b"])
    assert met["a-b"] == "a-b" and met["a_b"].startswith("a-b-") and met["a_b"] != "a-b"
    assert dns_labels(["a-b", "a_b"]) == met  # a function of the names, not of their order
    long = dns_labels(["x" * 80, "x" * 81])
    assert all(DNS_1035.fullmatch(v) for v in long.values()) and len(set(long.values())) == 2


# --- compose -------------------------------------------------------------------------------

@pytest.mark.parametrize("topo", SHIPPED, ids=lambda t: t.name)
def test_compose_runs_every_server_on_the_hosts_network_on_a_port_of_its_own(topo, tmp_path):
    files, _ = write_deployment(topo.name, "compose", tmp_path, "img:1", base_port=21000)
    (doc,) = read_back(files, COMPOSE_FILE)
    services = doc["services"]
    assert len(services) == len(server_names(topo))
    binds = [s["environment"][BIND_ENV] for s in services.values()]
    assert binds == [f"127.0.0.1:{21000 + i}" for i in range(len(services))]
    assert all(s["network_mode"] == "host" and "networks" not in s and "ports" not in s
               for s in services.values())
    public_service = services[dns_labels(server_names(topo))[topo.edge()]]
    assert public_service["environment"][BIND_ENV] == "127.0.0.1:21000"
    assert [s["command"] for s in services.values()] == [["serve", n] for n in server_names(topo)]
    assert all(s["image"] == "img:1" for s in services.values())
    others = set(services) - {dns_labels(server_names(topo))[topo.edge()]}
    assert set(public_service.get("depends_on", {})) == others


def test_compose_lists_every_replica_for_its_callers_and_keeps_secrets_in_the_env_file(tmp_path):
    files, _ = write_deployment("microservices-billing-x2", "compose", tmp_path, "img:1", 21000)
    (doc,) = read_back(files, COMPOSE_FILE)
    urls = json.loads(doc["services"]["gateway"]["environment"][URLS_ENV])
    billing = [s["environment"][BIND_ENV] for k, s in doc["services"].items()
               if k in ("billing", "billing-2")]
    assert urls["billing"] == [f"http://{bind}" for bind in billing] and len(billing) == 2
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert TOKEN_SECRET_ENV in text and CREDENTIAL_ENV in text
    assert not any(TOKEN_SECRET_ENV in json.dumps(s["environment"])
                   for s in doc["services"].values())
    assert (tmp_path / "topology.toml").read_text() == (
        built_in_topologies()["microservices-billing-x2"].read_text())


def test_deploying_again_keeps_the_secrets_so_tokens_stay_valid(tmp_path):
    write_deployment("monolith", "compose", tmp_path, "img:1")
    first = (tmp_path / ".env").read_text()
    write_deployment("monolith", "kubernetes", tmp_path, "img:1")
    assert (tmp_path / ".env").read_text() == first
    other = tmp_path / "other"
    write_deployment("monolith", "compose", other, "img:1")
    assert (other / ".env").read_text() != first


def test_an_env_file_given_beforehand_supplies_the_secrets_and_is_made_private(tmp_path):
    env = tmp_path / ".env"
    env.write_text(f"{TOKEN_SECRET_ENV}=mine\nOTHER=kept\n")
    env.chmod(0o644)
    files, _ = write_deployment("monolith", "kubernetes", tmp_path, "img:1")
    values = read_env_file(env)
    assert values[TOKEN_SECRET_ENV] == "mine" and values["OTHER"] == "kept"
    assert len(values[CREDENTIAL_ENV]) >= 32 and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert objects_of(files)["Secret", "seambench"]["stringData"]["token-secret"] == "mine"


# --- kubernetes ----------------------------------------------------------------------------

def objects_of(files: list[Path]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in read_back(files, MANIFEST_FILE)}


@pytest.mark.parametrize("topo", SHIPPED, ids=lambda t: t.name)
def test_kubernetes_has_a_deployment_and_a_service_per_server_with_its_replicas(topo, tmp_path):
    files, _ = write_deployment(topo.name, "kubernetes", tmp_path, "img:1")
    objects = objects_of(files)
    namespace = kubernetes.namespace_of(topo)
    assert all(o["metadata"].get("namespace", namespace) == namespace for o in objects.values())
    labels = dns_labels([w.server for w in workloads(topo)])
    for workload in workloads(topo):
        deployment = objects["Deployment", labels[workload.server]]
        service = objects["Service", labels[workload.server]]
        assert deployment["spec"]["replicas"] == workload.replicas
        pod = deployment["spec"]["template"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["serve", workload.server]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
        assert container["ports"][0]["containerPort"] == port == service["spec"]["ports"][0]["port"]
    replicated = {p: topo.scale_of(p).replicas for p in topo.processes}
    assert sum(d["spec"]["replicas"] for (kind, _), d in objects.items() if kind == "Deployment") \
        == sum(replicated.values()) + len(topo.leaf_servers()) + (1 if topo.gateway else 0)


def test_kubernetes_gives_callers_one_url_per_service_and_keeps_secrets_in_the_secret(tmp_path):
    files, _ = write_deployment("microservices-billing-x2", "kubernetes", tmp_path, "img:1")
    objects = objects_of(files)
    config = objects["ConfigMap", kubernetes.CONFIG_NAME]["data"]
    assert json.loads(config[kubernetes.URLS_KEY])["billing"] == "http://billing:8000"
    assert config["topology.toml"] == built_in_topologies()["microservices-billing-x2"].read_text()
    secret = objects["Secret", kubernetes.CONFIG_NAME]["stringData"]
    assert len(secret) == 2 and all(len(value) >= 32 for value in secret.values())
    assert not any(value in json.dumps(config) for value in secret.values())
    env = {e["name"]: e for e in objects["Deployment", "auth"]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    token = env[TOKEN_SECRET_ENV]
    assert "value" not in token and "secretKeyRef" in token["valueFrom"]
    assert stat.S_IMODE((tmp_path / MANIFEST_FILE).stat().st_mode) == 0o600


def test_kubernetes_sizes_pods_as_the_topology_says_and_others_by_the_option(tmp_path):
    files, _ = write_deployment(str(sized_topology(tmp_path)), "kubernetes", tmp_path / "out",
                                "img:1", cpu="250m", memory="128Mi", public_service="LoadBalancer")
    objects = objects_of(files)

    def resources(name: str) -> dict:
        return objects["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["resources"]

    desk = objects["Deployment", "order-desk"]
    assert desk["spec"]["replicas"] == 3
    assert resources("order-desk") == {"requests": {"cpu": "1500m", "memory": "512Mi"},
                                       "limits": {"cpu": "1500m", "memory": "512Mi"}}
    assert resources("leaf-1-0")["limits"] == {"cpu": "100m", "memory": "128Mi"}
    assert resources("gateway")["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert objects["Service", "gateway"]["spec"]["type"] == "LoadBalancer"
    assert objects["Service", "rest"]["spec"]["type"] == "ClusterIP"
    urls = json.loads(objects["ConfigMap", "seambench"]["data"]["urls.json"])
    assert urls["order_desk"] == "http://order-desk:8000"
    assert urls["leaf.1.0"] == "http://leaf-1-0:8000"


def test_what_will_not_work_in_a_cluster_is_said():
    assert kubernetes.cluster_warnings(load_topology("microservices")) == []
    pg = kubernetes.cluster_warnings(load_topology("microservices-rabbitmq"))
    assert any("[database] auth" in w and "loopback" in w for w in pg)
    assert any(w.startswith("events") for w in pg)
    (x2,) = kubernetes.cluster_warnings(load_topology("microservices-billing-x2"))
    assert "'billing'" in x2 and "SQLite" in x2


def test_a_file_without_a_name_is_deployed_under_its_own(tmp_path):
    path = tmp_path / "auth-apart.toml"
    path.write_text('process.auth.components = ["auth"]\n'
                    'process.core.components = ["billing", "search", "notify"]\n')
    files, _ = write_deployment(str(path), "compose", tmp_path / "out", "img:1")
    assert load_topology(tmp_path / "out" / "topology.toml").name == "auth-apart"


# --- the command ---------------------------------------------------------------------------

def test_deploy_prints_the_files_it_wrote(capsys, monkeypatch, tmp_path):
    done = in_process(capsys, monkeypatch, "deploy", "hybrid", "--to", "kubernetes",
                      "--out", str(tmp_path))
    assert done.returncode == exitcodes.OK
    assert done.stdout.splitlines() == [str(tmp_path / MANIFEST_FILE), str(tmp_path / ".env")]


@pytest.mark.parametrize("args,says", [
    (["nowhere", "--to", "compose"], "no topology 'nowhere'"),
    (["monolith", "--to", "swarm"], "'swarm' is not one of"),
    (["monolith", "--to", "kubernetes", "--cpu", "lots"], "--cpu"),
    (["microservices", "--to", "compose", "--base-port", "65535"], "ports past 65535"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, args, says):
    done = in_process(capsys, monkeypatch, "deploy", *args, "--out", str(tmp_path / "out"))
    assert done.returncode == exitcodes.UNUSABLE
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_an_unwritable_out_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = in_process(capsys, monkeypatch, "deploy", "monolith", "--to", "compose",
                      "--out", str(blocker / "out"))
    assert done.returncode == exitcodes.UNUSABLE
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot write there" in done.stderr
