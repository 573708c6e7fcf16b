"""The real servers some tests need: PostgreSQL and RabbitMQ on loopback, nginx on the machine.

Every development and CI machine of this project runs both (PostgreSQL on 127.0.0.1:5432,
trust auth, user postgres; RabbitMQ on 127.0.0.1:5672, guest/guest). A laptop may not: then
the tests that need them are skipped with the reason printed (pytest -rs, on by default).
Under ``CI=true`` such a skip is a failure, so CI never passes by skipping.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("SEAMBENCH_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("SEAMBENCH_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _require(name: str, url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    if not _answers(host, port):
        _missing(f"{name} does not answer on {host}:{port}")


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and under CI=true this test may not be skipped")
    pytest.skip(reason)


def require_postgres() -> None:
    """Skip (or, under CI=true, fail) the calling test when PostgreSQL is not reachable."""
    _require("PostgreSQL", POSTGRES_URL)


def require_rabbitmq() -> None:
    """Skip (or, under CI=true, fail) the calling test when RabbitMQ is not reachable."""
    _require("RabbitMQ", RABBITMQ_URL)


def require_nginx() -> None:
    """Skip (or, under CI=true, fail) the calling test when nginx, the edge proxy, is not
    installed (.ci/run installs it)."""
    from bench.system.edge import find_nginx
    if find_nginx() is None:
        _missing("nginx is not installed (Debian: apt-get install nginx-light)")


def require_program(name: str, install: str) -> str:
    """The path of program ``name``; skips (or, under CI=true, fails) the calling test when
    it is not installed. ``install``: how to get it, said in the reason."""
    import shutil
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        _missing(f"{name} is not installed ({install})")
    return path


def require_docker() -> str:
    """The docker client's path, once its daemon answers; skips (or, under CI=true, fails)
    the calling test when either is missing (.ci/run installs and starts them)."""
    import subprocess
    docker = require_program("docker", "Debian: apt-get install docker.io")
    done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        _missing(f"the Docker daemon does not answer ({said}); scripts/start-docker starts one")
    return docker
