"""Every placement the contract suite runs against, behind one tiny HTTP-ish interface."""
from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import requests

from bench.system.launcher import LaunchSettings, launch
from monolith.app import create_app
from shop.placement import Deployment, Topology, load_topology, prepare_storage
from tests.servers import require_postgres, require_rabbitmq

# A short outbox lease: a killed relay's claims are retried after 2 s, not 15 s.
TEST_SETTINGS = replace(LaunchSettings(), scrypt_n=16, ready_timeout_s=60, outbox_lease_s=2.0)
PLACEMENTS = ("monolith-inprocess", "monolith", "microservices", "hybrid",
              "monolith-pg", "microservices-pg", "microservices-rabbitmq",
              "microservices-billing-x2",  # billing twice, behind the balancing hop
              "microservices-fanout-small")  # leaf servers: 4 shards x 2 replicas
# The real microservices-fanout (64 leaf servers) is started by tests/e2e/test_fanout_fleet.py.
SMALL_FANOUT_SHARDS = 4
# The fast tier's: the shop in-process, and split across processes with a gateway.
FAST_PLACEMENTS = ("monolith-inprocess", "microservices")
# What each placement needs besides Python (the real servers; see tests/servers.py).
NEEDS = {"monolith-pg": (require_postgres,), "microservices-pg": (require_postgres,),
         "microservices-rabbitmq": (require_postgres, require_rabbitmq)}


class Api:
    """``call`` returns (status, parsed JSON or None)."""

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None,
             raw: bytes | None = None) -> tuple[int, Any]:
        raise NotImplementedError


class InProcessApi(Api):
    def __init__(self, app) -> None:
        self.app = app  # for a WSGI transport (schemathesis)
        self.client = app.test_client()

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        response = self.client.open(path, method=method, data=data, headers=headers or {},
                                     content_type="application/json")
        return response.status_code, response.get_json(silent=True)


class HttpApi(Api):
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._session = requests.Session()

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        response = self._session.request(method, self.base_url + path, data=data, timeout=30,
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        """Close the kept-alive connections: a gthread worker waits for them when it is
        stopped (about 2 s a server)."""
        self._session.close()


def start(name: str, stack: ExitStack) -> tuple[Api, Any]:
    """Start a placement inside ``stack``; the Api and the running shop (None in-process).
    A placement whose servers are missing is skipped (failed under CI=true)."""
    for require in NEEDS.get(name, ()):
        require()
    if name == "monolith-inprocess":
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="seambench-test-"))
        deployment = Deployment(load_topology("monolith"), data_dir, "cred", "secret", scrypt_n=16)
        prepare_storage(deployment)
        app = create_app(deployment)
        stack.callback(app.extensions["seambench.shop"].close)
        return InProcessApi(app), None
    return _served(topology_of(name), stack,
                   workers=2 if name in ("monolith", "hybrid", "monolith-pg") else 1)


def topology_of(name: str) -> Topology:
    """The topology placement ``name`` runs."""
    if name == "monolith-inprocess":
        return load_topology("monolith")
    if name == "microservices-fanout-small":
        big = load_topology("microservices-fanout")
        return replace(big, name=name, leaves=replace(big.leaves, shards=SMALL_FANOUT_SHARDS))
    return load_topology(name)


def _served(topology, stack: ExitStack, workers: int) -> tuple[Api, Any]:
    # Two workers where it costs least, so SQLite sees writers in several processes.
    shop = stack.enter_context(launch(topology, replace(TEST_SETTINGS, workers=workers)))
    api = HttpApi(shop.base_url)
    stack.callback(api.close)  # before the shop stops: the stack unwinds in reverse
    return api, shop


def eventually(check, timeout_s: float = 10.0, interval_s: float = 0.05):
    """Poll ``check`` until it returns a truthy value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s")
        time.sleep(interval_s)


HYBRID_URLS = {p: f"http://127.0.0.1:{9000 + i}" for i, p in enumerate(["core", "search", "notify"])}


def unit_deployment(tmp_path, name: str, urls: dict[str, str] | None = None) -> Deployment:
    """A deployment of topology ``name`` for building processes in-process (no servers;
    ``urls`` only name where stubs would call)."""
    return Deployment(load_topology(name), str(tmp_path), "cred", "secret", urls=urls or {},
                      scrypt_n=16)
