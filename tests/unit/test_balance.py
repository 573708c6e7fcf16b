"""Balancing over replicas (shop/balance.py): least outstanding, ties round-robin; a refusing
replica skipped and set aside; only refusals move a call."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest

from shop.balance import COOLDOWN_S, ReplicaSet, hop_for
from shop.errors import Unavailable
from shop.hops import HopClient, HopSettings
from tests.unit.test_hops import read_request, response, serve


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answering(conn: socket.socket, seen: list) -> None:
    """Keep-alive server: records each request's head and answers 200 {"ok": true}."""
    while (head := read_request(conn)) is not None:
        seen.append(head)
        conn.sendall(response(200, {"ok": True}))


@contextmanager
def refusing_url() -> Iterator[str]:
    """A loopback port bound but not listening: every connection to it is refused. Held for
    the block, so no other program can start listening there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def replica_set(urls: list[str], clock: Clock | None = None) -> ReplicaSet:
    return ReplicaSet([HopClient(url, "cred", name="billing") for url in urls], "billing",
                      clock=clock or Clock())


def test_one_url_is_a_plain_hop_client_and_several_a_replica_set():
    seen = []
    one = hop_for(["http://127.0.0.1:1"], "cred", HopSettings(), "billing", observer=seen.append)
    assert type(one) is HopClient and one.observer == seen.append  # the measured hop, as before
    two = hop_for(["http://127.0.0.1:1", "http://127.0.0.1:2"], "cred", HopSettings(), "billing",
                  observer=seen.append)
    assert isinstance(two, ReplicaSet) and two.name == "billing"
    assert two.base_url == "http://127.0.0.1:1"
    assert [hop.observer for hop in two.replicas] == [seen.append] * 2  # each request observed
    with pytest.raises(ValueError):
        hop_for([], "cred", HopSettings(), "billing")


def test_ties_go_round_robin():
    with serve(answering) as (a, seen_a), serve(answering) as (b, seen_b):
        hops = replica_set([a, b])
        counts = []
        for i in range(6):
            assert hops.call("/x", {"n": i}, idempotent=False) == {"ok": True}
            counts.append((len(seen_a), len(seen_b)))
        assert counts == [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]
        hops.close()


class Gate:
    """A fake replica: ``call`` waits until the test opens it, counting who came."""

    def __init__(self, name: str, opened: bool = True) -> None:
        self.name, self.base_url, self.observer = name, f"http://{name}", None
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.open = threading.Event()
        if opened:
            self.open.set()

    def call(self, path: str, body: dict, *, idempotent: bool) -> dict:
        self.calls += 1
        self.entered.release()
        assert self.open.wait(10)
        return {"from": self.name}


def test_a_call_goes_to_the_replica_with_the_fewest_outstanding():
    slow, quick = Gate("slow", opened=False), Gate("quick")
    hops = ReplicaSet([slow, quick], "billing")  # type: ignore[list-item]
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(hops.call, "/x", {}, idempotent=True)  # a tie: the first replica
        assert slow.entered.acquire(timeout=5)
        assert hops.outstanding(0) == 1 and hops.outstanding(1) == 0
        for _ in range(5):  # slow has one in flight, quick none: each call goes to quick
            assert hops.call("/x", {}, idempotent=True) == {"from": "quick"}
        assert (slow.calls, quick.calls) == (1, 5)
        slow.open.set()
        assert stuck.result(timeout=5) == {"from": "slow"}
    assert hops.outstanding(0) == hops.outstanding(1) == 0
    answers = [hops.call("/x", {}, idempotent=True)["from"] for _ in range(4)]
    assert answers in (["slow", "quick"] * 2, ["quick", "slow"] * 2)  # tied again: alternating


def test_a_refusing_replica_is_skipped_even_for_a_non_idempotent_call_then_set_aside():
    clock = Clock()
    with refusing_url() as down, serve(answering) as (up, seen):
        hops = replica_set([down, up], clock)
        # The first call picks the refusing replica first (round-robin starts there): the
        # request never left, so it goes to the next replica, once.
        assert hops.call("/x", {}, idempotent=False) == {"ok": True}
        assert len(seen) == 1 and hops.errors == [1, 0]
        for _ in range(10):  # set aside: not tried again during the cool-down
            clock.now += COOLDOWN_S / 20
            assert hops.call("/x", {}, idempotent=False) == {"ok": True}
        assert len(seen) == 11 and hops.errors == [1, 0]
        clock.now += COOLDOWN_S  # cool-down over: tried again (and refused again), skipped
        assert hops.call("/x", {}, idempotent=False) == {"ok": True}
        assert len(seen) == 12 and hops.errors == [2, 0]
        assert hops.outstanding(0) == hops.outstanding(1) == 0
        hops.close()


def test_when_every_replica_refuses_the_call_is_unavailable_naming_the_dependency():
    clock = Clock()
    with ExitStack() as stack:
        urls = [stack.enter_context(refusing_url()) for _ in range(3)]
        hops = replica_set(urls, clock)
        with pytest.raises(Unavailable, match="^billing is unavailable: all 3 replicas refused") as err:
            hops.call("/x", {}, idempotent=True)
        assert not any(url.rsplit(":", 1)[1] in str(err.value) for url in urls)  # no address
        assert hops.errors == [1, 1, 1]
        # All set aside: each is still tried (one may be back), once per call.
        with pytest.raises(Unavailable):
            hops.send("GET", "/x", None, {}, idempotent=True)
        assert hops.errors == [2, 2, 2]


class Flaky:
    """A fake replica that refuses connections while ``down``, as HopClient reports it."""

    def __init__(self, name: str, down: bool) -> None:
        self.name, self.base_url, self.observer = name, f"http://{name}", None
        self.down = down
        self.calls = 0

    def call(self, path: str, body: dict, *, idempotent: bool) -> dict:
        self.calls += 1
        if self.down:
            raise Unavailable("billing is unavailable: cannot connect") from ConnectionRefusedError()
        return {"from": self.name}


def test_when_all_are_set_aside_the_one_set_aside_longest_is_tried_first():
    """Every replica set aside (all were down): a call still tries them, the earliest set
    aside first, so the set recovers on its first call after one comes back."""
    clock = Clock()
    first, second = Flaky("first", down=True), Flaky("second", down=True)
    hops = ReplicaSet([first, second], "billing", clock=clock)  # type: ignore[list-item]
    with pytest.raises(Unavailable, match="all 2 replicas refused"):
        hops.call("/x", {}, idempotent=False)
    assert (first.calls, second.calls) == (1, 1)
    clock.now += COOLDOWN_S / 2  # both still set aside; first was set aside earlier
    second.down = False
    assert hops.call("/x", {}, idempotent=False) == {"from": "second"}
    assert (first.calls, second.calls) == (2, 2) and hops.errors == [2, 1]
    # Second answered, so it is back in the rotation; first is still set aside.
    assert hops.call("/x", {}, idempotent=False) == {"from": "second"}
    assert first.calls == 2


def test_a_failure_after_the_request_left_is_not_moved():
    """A dropped connection (the replica may have acted) or a timeout stays the caller's."""
    def drop(conn: socket.socket, seen: list) -> None:
        if read_request(conn) is not None:
            seen.append("dropped")  # and closed unanswered

    with serve(drop) as (dropping, dropped), serve(answering) as (up, seen):
        hops = replica_set([dropping, up])
        with pytest.raises(Unavailable, match="billing is unavailable: connection dropped"):
            hops.call("/x", {}, idempotent=False)
        assert dropped == ["dropped"] and seen == [] and hops.errors == [1, 0]
        assert hops.call("/x", {}, idempotent=False) == {"ok": True}  # next in turn, not aside
        hops.close()


def test_many_threads_share_a_replica_set():
    with serve(answering) as (a, seen_a), serve(answering) as (b, seen_b):
        hops = replica_set([a, b])
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: hops.call("/x", {"n": i}, idempotent=True),
                                    range(400)))
        assert answers == [{"ok": True}] * 400
        assert len(seen_a) + len(seen_b) == 400 and min(len(seen_a), len(seen_b)) > 50
        assert hops.outstanding(0) == hops.outstanding(1) == 0 and hops.errors == [0, 0]
        hops.close()
