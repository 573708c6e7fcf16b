"""`seambench serve NAME`: the server a container runs is the one the launcher would start:
the same gunicorn command line but for the address, the same environment, the databases
of what it hosts prepared first; the other servers' addresses and the secrets read from
the environment, and refused in one line when unusable. One monolith is started for real."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench import exitcodes
from bench.deploy.compose import urls_document
from bench.deploy.serve import ServeError, deployment_for, prepare_server, read_urls, server_exec
from bench.deploy.servers import CREDENTIAL_ENV, TOKEN_SECRET_ENV
from bench.system.launcher import (ALLOCATOR_ENV, LaunchSettings, app_spec, gunicorn_command,
                                   process_settings)
from shop.placement import Deployment, load_topology
from shop.server import DEPLOYMENT_ENV, PROCESS_ENV, THREADS_ENV
from shop.telemetry import MULTIPROC_ENV
from tests.unit.test_cli_conventions import in_process

SECRETS = {TOKEN_SECRET_ENV: "token-secret", CREDENTIAL_ENV: "credential"}


def x2_deployment(tmp_path: Path) -> Deployment:
    topology = load_topology("microservices-billing-x2")
    return deployment_for(topology, json.dumps(urls_document(topology, 21000)), "s", "c", tmp_path)


def test_the_urls_give_each_process_its_address_and_a_replicated_one_every_replica(tmp_path):
    dep = x2_deployment(tmp_path)
    assert dep.urls["gateway"] == "http://127.0.0.1:21000"
    assert dep.urls_of("billing") == ["http://127.0.0.1:21002", "http://127.0.0.1:21003"]
    assert dep.urls["billing"] == dep.urls_of("billing")[0] and "auth" not in dep.replica_urls
    assert (dep.token_secret, dep.service_credential) == ("s", "c")


@pytest.mark.parametrize("text,says", [
    ("not json", "not JSON"), ("[1]", "JSON object"), ('{"auth": 3}', "'auth' must be"),
    ('{"auth": []}', "'auth' must be"), ('{"auth": "ftp://x:1"}', "expected http://HOST:PORT"),
])
def test_unusable_urls_are_refused_with_the_reason(text, says):
    with pytest.raises(ServeError, match=says):
        read_urls(text)


def test_a_server_the_urls_leave_out_is_named(tmp_path):
    with pytest.raises(ServeError, match="no URL for billing, gateway"):
        deployment_for(load_topology("microservices"),
                       json.dumps({"auth": "http://a:1", "search": "http://s:1",
                                   "notify": "http://n:1"}), "s", "c", tmp_path)


@pytest.mark.parametrize("name", ["billing#2", "gateway", "auth"])
def test_the_command_and_environment_are_the_launchers(tmp_path, name):
    dep = x2_deployment(tmp_path)
    settings = LaunchSettings(threads=5)
    command, env = server_exec(dep, name, "0.0.0.0:8000", settings)
    process = name.partition("#")[0]
    expected = gunicorn_command(app_spec(dep.topology, process), "0.0.0.0:8000",
                                process_settings(settings, dep.topology, process), name)
    assert command == expected and command[command.index("--bind") + 1] == "0.0.0.0:8000"
    assert Deployment.from_json(env[DEPLOYMENT_ENV]) == dep
    assert env[PROCESS_ENV] == process and env[THREADS_ENV] == "5"
    assert ALLOCATOR_ENV.items() <= env.items()
    metrics = Path(env[MULTIPROC_ENV])
    assert metrics == tmp_path / "metrics" / name
    assert metrics.is_dir() and not any(metrics.iterdir())


def test_a_leaf_server_prepares_its_own_shard_and_a_process_what_it_hosts(tmp_path):
    topology = load_topology("microservices-fanout")
    urls = {name: "http://127.0.0.1:1" for name in
            [*topology.processes, *topology.leaf_servers(), "gateway"]}
    dep = deployment_for(topology, json.dumps(urls), "s", "c", tmp_path)
    prepare_server(dep, "leaf.3.1")
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["search-leaf-3-of-32.db"]
    prepare_server(dep, "gateway")  # hosts nothing
    prepare_server(dep, "billing")
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["billing.db", "search-leaf-3-of-32.db"]


@pytest.mark.parametrize("args,env,says", [
    (["serve", "app", "--topology", "monolith"], {}, "SEAMBENCH_TOKEN_SECRET and"),
    (["serve", "nobody", "--topology", "monolith"], SECRETS, "runs no server 'nobody'"),
    (["serve", "app", "--topology", "nowhere"], SECRETS, "no topology 'nowhere'"),
    (["serve", "app", "--topology", "monolith", "--urls", "{}"], SECRETS, "no URL for app"),
    (["serve", "app", "--topology", "monolith", "--bind", "here"], SECRETS, "not HOST:PORT"),
])
def test_unusable_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, args, env, says):
    for key in SECRETS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    done = in_process(capsys, monkeypatch, *args, "--data-dir", str(tmp_path))
    assert done.returncode == exitcodes.UNUSABLE
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_becomes_the_monoliths_gunicorn_and_stops_on_sigterm(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **SECRETS, "SEAMBENCH_URLS": json.dumps({"app": url})}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()",
                               "serve", "app", "--topology", "monolith", "--bind",
                               f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = requests.get(f"{url}/readyz", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert ready.status_code == 200 and ready.json()["process"] == "app"
        assert "gunicorn" in Path(f"/proc/{server.pid}/cmdline").read_text()  # exec'd, not a child
        registered = requests.post(f"{url}/auth/register", timeout=10,
                                   json={"username": "served", "password": "secret-pass"})
        assert registered.status_code == 201
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0
