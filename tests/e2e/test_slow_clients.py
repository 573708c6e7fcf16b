"""Slow clients cannot take the shop's public edge down, in any placement.

Fifty connections of each slow kind (tests/slowclients.py: half a request line, endless
headers, a body that never comes, an endless chunk) are held against the public address for
30 s while a probe asks /healthz ten times a second on new connections: behind the nginx
edge every probe is answered within 1 s. The same attack on gunicorn without the edge
must leave probes unanswered, or the test could not see the fault it rules out.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from bench.system.launcher import launch
from shop.address import address_of
from shop.placement import load_topology
from tests.placements import TEST_SETTINGS
from tests.servers import require_nginx
from tests.slowclients import KINDS, probe, slow_clients

PER_KIND = 50
ATTACK_S = 30.0


@pytest.mark.parametrize("topology", ["monolith", "microservices", "hybrid"])
def test_the_edge_keeps_answering_under_slow_clients(topology):
    require_nginx()
    with launch(load_topology(topology), replace(TEST_SETTINGS, edge="nginx")) as shop:
        assert shop.edge is not None and shop.base_url != shop.public_process_url
        address = address_of(shop.base_url)
        with slow_clients(address, PER_KIND) as attack:
            latencies = probe(address, ATTACK_S)
        unanswered = latencies.count(None)
        assert attack.opened >= PER_KIND * len(KINDS)  # the attack was really held
        assert len(latencies) >= ATTACK_S * 5
        assert unanswered == 0, f"{unanswered} of {len(latencies)} probes not answered in 1 s"
        assert max(latencies) < 1.0
        # and the shop behind it still serves after the attack ends
        assert probe(address, 1.0) and None not in probe(address, 1.0)


def test_without_the_edge_slow_clients_take_gunicorn_down():
    """The planted fault: the same attack straight at gunicorn's 8 threads."""
    with launch(load_topology("monolith"), replace(TEST_SETTINGS, edge="none")) as shop:
        assert shop.edge is None
        address = address_of(shop.base_url)
        assert None not in probe(address, 0.5)  # it answers before the attack
        with slow_clients(address, PER_KIND, kinds=["half request line"]):
            latencies = probe(address, 5.0)
        assert latencies.count(None) > len(latencies) // 2, latencies
