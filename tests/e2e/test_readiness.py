"""/readyz says whether a process's dependencies answer: a paused auth makes the gateway and
every process that calls auth not ready, naming auth, and they recover when it resumes."""
from __future__ import annotations

import os
import signal
from contextlib import ExitStack

import requests

from tests.placements import eventually, start


def readiness(url: str) -> tuple[int, dict]:
    r = requests.get(url + "/readyz", timeout=5)
    return r.status_code, r.json()


def test_readyz_names_a_paused_dependency_and_recovers():
    with ExitStack() as stack:
        _, shop = start("microservices", stack)
        auth = shop.processes["auth"]
        callers = [shop.base_url, shop.processes["billing"].url]  # both call auth
        assert all(readiness(url)[0] == 200 for url in callers)
        os.killpg(auth.pid, signal.SIGSTOP)
        try:
            for url in callers:
                status, body = eventually(lambda u=url: (r := readiness(u))[0] == 503 and r,
                                          timeout_s=5)
                assert body["error"] == "not_ready" and "auth" in body["detail"], body
            assert "search" not in readiness(shop.base_url)[1]["detail"]  # only what is down
        finally:
            os.killpg(auth.pid, signal.SIGCONT)
        for url in callers:
            eventually(lambda u=url: readiness(u)[0] == 200, timeout_s=5)
