"""Chaos: the user mix while faults are injected, every operation logged for the oracle.

Each arrival picks a user (option ``tokens``) and one of: a keyed top-up, a keyed checkout,
a search, an inbox read (option ``weights``). Every operation is appended to
``ops-<generator>.jsonl`` in the plan's output directory as it ends, as Jepsen logs a history:
when it was meant to start (epoch seconds), what it was (user index, key, amount or items),
how it ended (status, or 0 for no answer), how long it took (µs from the intended time) and
its outcome:

- ``ok``: a 2xx (a checkout's order id and total kept);
- ``failed``: a 4xx: the shop says it did nothing (e.g. 402, not enough money);
- ``unknown``: a 5xx or no answer to a top-up or checkout: it may or may not have happened
  (the oracle resends it with its key to find out);
- ``error``: a 5xx or no answer to a read, which changes nothing.

A request still in flight when the drain ends is logged with status 0 as it is cut off.
Arrivals dropped because the generator's pool was full were never sent and are not logged.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from bench.experiments.chaos.oracle import outcome, topup_amount
from bench.load.openloop import INTENDED, OpenLoopUser, Send

DEFAULT_WEIGHTS = {"topup": 25, "checkout": 35, "search": 25, "inbox": 15}
QUERIES = ("lamp", "kettle", "oak chair", "camping tent", "steel knife")


class ChaosUser(OpenLoopUser):
    def prepare(self) -> None:
        options = self.plan.options
        weights = options.get("weights", DEFAULT_WEIGHTS)
        self._kinds = list(weights)
        self._weights = [weights[k] for k in self._kinds]
        self._tokens = list(options["tokens"])
        self._skus = int(options.get("skus", 200))
        # offset between the monotonic intended times and the epoch, fixed once
        self._epoch_offset_s = time.time() - time.perf_counter_ns() / 1e9
        self._topups = 0
        path = Path(self.plan.output_dir) / f"ops-{self.plan.process_index}.jsonl"
        self._log = open(path, "a", buffering=1)

    def next_request(self) -> tuple[str, Send]:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        who = rng.randrange(len(self._tokens))
        headers = {"Authorization": f"Bearer {self._tokens[who]}"}
        op: dict = {"op": kind, "user": who}
        if kind == "topup":
            amount = topup_amount(self.plan.process_index, self._topups)
            self._topups += 1
            op.update(key=uuid.UUID(int=rng.getrandbits(128)).hex, amount=amount)
            headers["Idempotency-Key"] = op["key"]
            request = self.client.prepare("POST", "/billing/topup", json={"amount_cents": amount},
                                          headers=headers, name=kind)
        elif kind == "checkout":
            items = [{"sku": f"SKU-{rng.randrange(1, self._skus + 1):06d}", "qty": 1}
                     for _ in range(rng.randrange(1, 3))]
            op.update(key=uuid.UUID(int=rng.getrandbits(128)).hex, items=items)
            headers["Idempotency-Key"] = op["key"]
            request = self.client.prepare("POST", "/billing/checkout", json={"items": items},
                                          headers=headers, name=kind)
        elif kind == "search":
            request = self.client.prepare("GET", f"/search?q={rng.choice(QUERIES)}&limit=5",
                                          headers=headers, name=kind)
        else:
            request = self.client.prepare("GET", "/notify/inbox", headers=headers, name=kind)

        def send(context: dict) -> None:
            try:
                response = request(context)
            except BaseException:  # killed at the drain's end: in flight, so unknown
                self._record(op, context[INTENDED], None)
                raise
            self._record(op, context[INTENDED], response)

        return kind, send

    def _record(self, op: dict, intended_ns: int, response) -> None:
        status = getattr(response, "status_code", 0) or 0
        done_ns = getattr(response, "done_ns", 0) or time.perf_counter_ns()
        # what the oracle and the recovery need; the latency is in the interval logs
        entry = {**op, "t": round(intended_ns / 1e9 + self._epoch_offset_s, 6),
                 "done": round(done_ns / 1e9 + self._epoch_offset_s, 6), "status": status,
                 "outcome": outcome(op["op"], status)}
        if op["op"] == "checkout" and status == 201:
            body = response.json()
            entry.update(order_id=body["order_id"], total=body["total_cents"])
        self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
