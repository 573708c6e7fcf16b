"""The user journey: users log in once, then a weighted mix of shop calls arrives open-loop.

Before the schedule starts (untimed), each of ``users`` users registers, logs in and tops
up, unless the harness passes ready-made bearer ``tokens``. Each arrival then picks a user and one of: search (55%), checkout with an
Idempotency-Key (20%), inbox (15%), top-up (10%); top-ups outpace checkouts so no one runs out of money. Weights, user count and the search
vocabulary are options (``LoadPlan.options``: ``users`` or ``tokens``, ``weights``, ``skus``).
"""
from __future__ import annotations

import uuid

from bench.load.openloop import OpenLoopUser, Send

DEFAULT_WEIGHTS = {"search": 55, "checkout": 20, "inbox": 15, "topup": 10}
QUERIES = ("lamp", "kettle", "oak chair", "wireless speaker", "camping tent", "steel knife",
           "leather wallet", "smart clock", "glass bottle", "travel backpack")
SKUS = 1000  # checkouts pick among the first SKUs (option ``skus``)
PASSWORD = "journey-password"
TOPUP_CENTS = 5_000_000


class JourneyUser(OpenLoopUser):
    def prepare(self) -> None:
        options = self.plan.options
        weights = options.get("weights", DEFAULT_WEIGHTS)
        self._kinds = list(weights)
        self._weights = [weights[k] for k in self._kinds]
        self._tokens = []
        self._skus = int(options.get("skus", SKUS))
        if options.get("tokens"):  # users the harness made beforehand
            self._tokens = [{"Authorization": f"Bearer {t}"} for t in options["tokens"]]
            return
        run = uuid.uuid4().hex[:8]
        for i in range(int(options.get("users", 16))):
            username = f"j{run}-{self.plan.process_index}-{i}"
            body = {"username": username, "password": PASSWORD}
            self._expect(201, self.client.post("/auth/register", json=body, name="setup register"))
            login = self.client.post("/auth/login", json=body, name="setup login")
            self._expect(200, login)
            self._tokens.append({"Authorization": f"Bearer {login.json()['token']}"})
            for _ in range(2):
                self._expect(200, self.client.post("/billing/topup", json={"amount_cents": TOPUP_CENTS},
                                                   headers=self._tokens[-1], name="setup topup"))

    @staticmethod
    def _expect(status: int, response) -> None:
        if response.status_code != status:
            raise RuntimeError(f"journey set-up: expected {status}, got {response.status_code}: "
                               f"{(response.text or '')[:200]}")

    def next_request(self) -> tuple[str, Send]:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        auth = rng.choice(self._tokens)
        client = self.client
        # prepared requests: their bytes are built here, before the intended send time
        if kind == "search":
            q = rng.choice(QUERIES)
            return kind, client.prepare("GET", f"/search?q={q}&limit=10", headers=auth, name=kind)
        if kind == "checkout":
            items = [{"sku": f"SKU-{rng.randrange(1, self._skus + 1):06d}", "qty": 1}
                     for _ in range(rng.randrange(1, 4))]
            headers = {**auth, "Idempotency-Key": uuid.UUID(int=rng.getrandbits(128)).hex}
            return kind, client.prepare("POST", "/billing/checkout", json={"items": items},
                                        headers=headers, name=kind)
        if kind == "inbox":
            return kind, client.prepare("GET", "/notify/inbox", headers=auth, name=kind)
        if kind == "topup":
            return kind, client.prepare("POST", "/billing/topup", json={"amount_cents": 500_000},
                                        headers=auth, name=kind)
        raise ValueError(f"unknown request kind {kind!r} in weights")
