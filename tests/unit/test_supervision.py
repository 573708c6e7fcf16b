"""The supervisor's rules on fake processes: restart after a backoff that doubles while a
server keeps dying, a hold keeps it down, and it gives up on one that never comes back."""
from __future__ import annotations

import time
from dataclasses import replace

from bench.system.supervision import SupervisionSettings, Supervisor
from tests.placements import eventually

FAST = SupervisionSettings(poll_s=0.005, first_delay_s=0.05, max_delay_s=0.4, stable_s=60,
                           ready_timeout_s=0.2, give_up_after=3)


class FakeServers:
    def __init__(self, names, come_back: bool = True) -> None:
        self.alive = {n: True for n in names}
        self.started: list[tuple[str, float]] = []
        self.come_back = come_back

    def exited(self, name):
        return None if self.alive[name] else -9

    def restart(self, name):
        self.started.append((name, time.time()))
        self.alive[name] = self.come_back

    def ready(self, name):
        return self.alive[name]


def supervised(servers, settings=FAST) -> Supervisor:
    sup = Supervisor(list(servers.alive), servers.exited, servers.restart, servers.ready, settings)
    sup.start()
    return sup


def test_restarts_with_a_doubling_backoff():
    servers = FakeServers(["billing", "notify"])
    sup = supervised(servers)
    try:
        downtimes = []
        for _ in range(3):
            servers.alive["billing"] = False
            n = len(sup.restarts_of("billing"))
            record = eventually(lambda: len(r := sup.restarts_of("billing")) > n and r[-1].ready_at
                                and r[-1], timeout_s=5)
            downtimes.append(record.restarted_at - record.died_at)
        assert all(e <= d < e + 0.03 for d, e in zip(downtimes, (0.05, 0.1, 0.2))), downtimes
        assert all(name == "billing" for name, _ in servers.started)
        assert servers.alive["notify"]
    finally:
        sup.stop()


def test_a_hold_keeps_a_server_down_until_released():
    servers = FakeServers(["notify"])
    sup = supervised(servers)
    try:
        sup.hold("notify", time.time() + 60)
        servers.alive["notify"] = False
        time.sleep(0.3)
        assert servers.started == []
        sup.release("notify")
        eventually(lambda: servers.started, timeout_s=2)
    finally:
        sup.stop()


def test_gives_up_on_a_server_that_never_comes_back():
    servers = FakeServers(["auth"], come_back=False)
    servers.alive["auth"] = False
    sup = supervised(servers)
    try:
        eventually(lambda: "auth" in sup.given_up, timeout_s=10)
        assert len(servers.started) == FAST.give_up_after
    finally:
        sup.stop()


def test_a_held_death_restarts_when_the_hold_ends_without_backoff():
    servers = FakeServers(["billing"])
    sup = supervised(servers, replace(FAST, first_delay_s=0.3))
    try:
        for _ in range(3):
            n = len(sup.restarts_of("billing"))
            sup.hold("billing", time.time() + 0.1)
            servers.alive["billing"] = False
            record = eventually(lambda: len(r := sup.restarts_of("billing")) > n and r[-1].ready_at
                                and r[-1], timeout_s=5)
            assert record.restarted_at - record.died_at < 0.2  # the hold, not 0.3, 0.6, 1.2 s
    finally:
        sup.stop()
