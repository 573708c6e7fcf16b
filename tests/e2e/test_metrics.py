"""/metrics of a launched process counts what all its gunicorn workers did, dead ones too."""
from __future__ import annotations

from dataclasses import replace

import psutil
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.system.launcher import LaunchSettings, launch
from shop.placement import load_topology
from tests.placements import eventually

K = 5
# One public path per dependency of the gateway (the process that owns it); without a token
# most answer 401, still after one hop.
PATHS = {"auth": "/chain?k=0", "search": "/search?q=lamp", "billing": "/billing/balance",
         "notify": "/notify/inbox"}


def counts(url: str, family: str, label: str) -> dict[str, float]:
    """The ``_count`` of histogram ``family`` summed by the value of ``label``."""
    out: dict[str, float] = {}
    text = requests.get(url + "/metrics", timeout=5).text
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == f"{family}_count":
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out


def test_counts_are_summed_over_the_workers_even_after_they_died():
    settings = replace(LaunchSettings(), scrypt_n=16, workers=2)
    with launch(load_topology("microservices"), settings) as shop:
        gateway, auth = shop.processes["gateway"], shop.processes["auth"]
        for path in PATHS.values():
            for _ in range(K):  # a new connection each: any worker may take it
                requests.get(shop.base_url + path, timeout=10)

        def routes(url: str) -> dict[str, float]:
            return counts(url, "seambench_http_request_duration_seconds", "route")

        forwarded = K * len(PATHS)
        assert routes(gateway.url)["/<path:path>"] == forwarded  # the rule, not the paths
        assert routes(auth.url)["/chain"] == K  # over the gateway's pooled connections
        hops = counts(gateway.url, "seambench_hop_duration_seconds", "dependency")
        assert hops == {dependency: K for dependency in PATHS}

        # The workers that counted die; the ones gunicorn starts instead served none of it.
        workers = psutil.Process(gateway.pid).children()
        for worker in workers:
            worker.kill()
        old = {w.pid for w in workers}
        eventually(lambda: len([w for w in psutil.Process(gateway.pid).children()
                                if w.pid not in old]) == 2, timeout_s=30)
        assert routes(gateway.url)["/<path:path>"] == forwarded
