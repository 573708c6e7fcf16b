"""Kubernetes manifests for a topology: a namespace of its own, and for every process, leaf
server and the gateway a Deployment (its replicas) and a Service, all of the one image.

A caller is given a replicated process's one Service URL, and kube-proxy spreads the
connections over its pods (where the launcher's callers balance each request themselves:
docs/kubernetes.md says what that changes). Each pod listens on ``POD_PORT``; readiness
is /readyz (its own dependencies answer), liveness /healthz; Prometheus finds /metrics by
the pod's ``prometheus.io`` annotations. The topology file and the servers' URLs are in a
ConfigMap, the token secret and the service credential in a Secret. PostgreSQL and RabbitMQ
are reached at the topology's URLs, which a user edits to the cluster's own.
"""
from __future__ import annotations

import json
from typing import Any

from bench.deploy.servers import (BIND_ENV, CONFIG_DIR, DATA_DIR, DATA_DIR_ENV, POD_BIND, POD_PORT,
                                  SECRET_ENVS, TOPOLOGY_ENV, TOPOLOGY_FILE, URLS_ENV, Workload,
                                  dns_labels)
from shop.topology import Topology

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")  # the public Service's choices
CONFIG_NAME = "seambench"  # the ConfigMap and the Secret, in the deployment's namespace
URLS_KEY = "urls.json"
SECRET_KEYS = {env: env.removeprefix("SEAMBENCH_").lower().replace("_", "-") for env in SECRET_ENVS}
RUN_AS = 10001  # the image's user (Dockerfile), who owns /data
STARTUP_GRACE_S = 120  # a cold start seeds the catalog: liveness waits for the first answer
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
SERVER_ANNOTATION = "seambench.io/server"  # the launcher's name of the server a pod runs


def namespace_of(topology: Topology) -> str:
    """The namespace a topology is deployed in, so two placements sit side by side in one
    cluster with the same Service names: ``seambench-NAME`` as a DNS label."""
    name = f"seambench-{topology.name}"
    return dns_labels([name])[name]


def service_urls(workloads: list[Workload]) -> dict[str, str]:
    """What ``SEAMBENCH_URLS`` says in a pod: each server's Service, by its short name (the
    pods are in the Services' namespace)."""
    labels = dns_labels([w.server for w in workloads])
    return {w.server: f"http://{labels[w.server]}:{POD_PORT}" for w in workloads}


def resources_of(workload: Workload) -> dict[str, dict[str, str]]:
    """The pod's requests and limits, equal: a measured server should get what it asked for
    and no more (Guaranteed QoS), so its figures do not depend on its neighbours' load."""
    asked = {key: value for key, value in (("cpu", workload.cpu), ("memory", workload.memory))
             if value is not None}
    return {"requests": asked, "limits": dict(asked)} if asked else {}


def container_of(workload: Workload, image: str) -> dict[str, Any]:
    """The one container of a server's pod: ``seambench serve NAME`` with its environment."""
    env = [{"name": TOPOLOGY_ENV, "value": f"{CONFIG_DIR}/{TOPOLOGY_FILE}"},
           {"name": BIND_ENV, "value": POD_BIND}, {"name": DATA_DIR_ENV, "value": DATA_DIR},
           {"name": URLS_ENV,
            "valueFrom": {"configMapKeyRef": {"name": CONFIG_NAME, "key": URLS_KEY}}},
           *({"name": env_name,
              "valueFrom": {"secretKeyRef": {"name": CONFIG_NAME, "key": key}}}
             for env_name, key in SECRET_KEYS.items())]
    container = {
        "name": "server", "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["serve", workload.server], "env": env,
        "ports": [{"name": "http", "containerPort": POD_PORT, "protocol": "TCP"}],
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                         "failureThreshold": STARTUP_GRACE_S // 2},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2,
                           "timeoutSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "timeoutSeconds": 2, "failureThreshold": 3},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}],
    }
    resources = resources_of(workload)
    if resources:
        container["resources"] = resources
    return container


def workload_objects(workload: Workload, label: str, namespace: str, image: str,
                     service_type: str) -> list[dict[str, Any]]:
    """The Deployment and the Service of one workload, named ``label``."""
    labels = {PART_OF: "seambench", COMPONENT: label}
    meta = {"name": label, "namespace": namespace, "labels": labels}
    pod = {
        "metadata": {"labels": labels, "annotations": {
            "prometheus.io/scrape": "true", "prometheus.io/port": str(POD_PORT),
            "prometheus.io/path": "/metrics", SERVER_ANNOTATION: workload.server}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "fsGroup": RUN_AS},
            "containers": [container_of(workload, image)],
            "volumes": [{"name": "config", "configMap": {
                             "name": CONFIG_NAME,
                             "items": [{"key": TOPOLOGY_FILE, "path": TOPOLOGY_FILE}]}},
                        # Each pod's own: SQLite files and metrics go with the pod.
                        {"name": "data", "emptyDir": {}}],
        },
    }
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                  "spec": {"replicas": workload.replicas, "selector": {"matchLabels": labels},
                           "template": pod}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": service_type, "selector": labels,
                        "ports": [{"name": "http", "port": POD_PORT, "targetPort": "http",
                                   "protocol": "TCP"}]}}
    return [deployment, service]


def manifests(topology: Topology, topology_text: str, workloads: list[Workload],
              secrets: dict[str, str], image: str,
              public_service: str = "ClusterIP") -> list[dict[str, Any]]:
    """Every object, in the order ``kubectl apply`` creates them: the namespace, the
    ConfigMap (the topology file and the URLs), the Secret, then each workload's Deployment
    and Service, the public one first, of type ``public_service`` (the others ClusterIP).
    ``secrets``: the values by ``seambench serve``'s variable names."""
    namespace = namespace_of(topology)
    labels = dns_labels([w.server for w in workloads])
    common = {PART_OF: "seambench"}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": common}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": CONFIG_NAME, "namespace": namespace, "labels": common},
         "data": {TOPOLOGY_FILE: topology_text,
                  URLS_KEY: json.dumps(service_urls(workloads), indent=1)}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": CONFIG_NAME, "namespace": namespace, "labels": common},
         "stringData": {key: secrets[env] for env, key in SECRET_KEYS.items()}},
    ]
    for i, workload in enumerate(workloads):
        objects += workload_objects(workload, labels[workload.server], namespace, image,
                                    public_service if i == 0 else "ClusterIP")
    return objects


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def cluster_warnings(topology: Topology) -> list[str]:
    """What in ``topology`` will not work in a cluster as written, one sentence each: a
    server at a loopback address (in a pod, the pod itself), and a replicated process on
    SQLite (each pod would keep a database of its own)."""
    found = []
    urls = {f"[database] {c}": url for c, url in topology.databases.items() if "://" in url}
    if topology.events.startswith("amqp://"):
        urls["events"] = topology.events
    for key, url in urls.items():
        if any(f"@{host}" in url or f"//{host}" in url for host in LOOPBACK_HOSTS):
            found.append(f"{key} is at a loopback address, which in a pod is the pod itself: "
                         f"edit {TOPOLOGY_FILE} in the ConfigMap to your cluster's server")
    for process, hosted in topology.processes.items():
        on_sqlite = [c for c in hosted if "://" not in topology.databases[c]
                     or topology.databases[c].startswith("sqlite:")]
        if topology.scale_of(process).replicas > 1 and on_sqlite:
            found.append(f"process {process!r} has {topology.scale_of(process).replicas} "
                         f"replicas but keeps {', '.join(on_sqlite)} in SQLite: each pod would "
                         f"have a database of its own; give it a postgresql:// database")
    return found
