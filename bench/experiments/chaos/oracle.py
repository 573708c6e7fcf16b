"""The consistency oracle: after faults, healing and a quiet period, did the shop lose or
duplicate anything?

It reads the operation log the chaos scenario wrote (bench/experiments/chaos/scenario.py), first
*resolves* every write whose outcome is unknown by sending it again with its own
Idempotency-Key and body, as a careful client would, and tells apart a write the shop had
already done (the resend replays it: the balance does not move) from one done by the resend
(the balance moves by its amount; nothing else runs while the oracle judges). Then it
checks, per user:

- money: balance after - balance before == top-ups credited - checkouts charged, exactly;
- no double charge: every answer for one checkout key names the same order, including the
  answer to sending each answered checkout once more (a shop that charged again would name
  a second order);
- every payment notified exactly once: the inbox, read whole (page by page), gained exactly
  the orders the log has, and no order appears twice in it, earlier orders included;
- nothing pending: the outbox holds no undelivered event, no write is still unknown.

A write the shop did but reported as failed would show as money unaccounted for; one it
reported done but lost, likewise. The verdict lists every discrepancy it finds.
"""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

WRITES = ("topup", "checkout")
TOPUP_BASE_CENTS = 200_000
MAX_GENERATORS = 64  # the generator processes a step may split over (seambench load --processes)


def topup_amount(process_index: int, n: int) -> int:
    """The amount (cents) of generator ``process_index``'s ``n``-th top-up: distinct across
    a step, so one credit doubled and another lost cannot cancel in a user's balance, as
    they did when every top-up was the same amount."""
    return TOPUP_BASE_CENTS + process_index + MAX_GENERATORS * n


def outcome(op: str, status: int) -> str:
    """How an operation of the log ended, from its HTTP status (0: no answer): "ok" (2xx),
    "failed" (4xx: the shop did nothing), "unknown" (a write with a 5xx or no answer: it may
    have happened) or "error" (a read with a 5xx or no answer)."""
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "failed"
    return "unknown" if op in WRITES else "error"


Call = Callable[[str, str, dict | None, dict[str, str]], tuple[int, dict]]
"""(method, path, body, headers) -> (status, JSON body): the public API, as one user."""


@dataclass
class Verdict:
    ops: int = 0
    writes: int = 0
    unknown_before: int = 0  # writes whose outcome the generator did not learn
    resolved_done: int = 0  # of those, the resend found done (the shop had done it) ...
    resolved_by_resend: int = 0  # ... or did now (the shop had not: the client's resend did)
    resolved_failed: int = 0  # ... or refused (a 4xx)
    unresolved: int = 0
    money_lost_cents: int = 0  # expected minus actual, summed where positive
    money_created_cents: int = 0  # actual minus expected, summed where positive
    double_charged_keys: int = 0
    notifications_missing: int = 0
    notifications_duplicated: int = 0
    notifications_unexpected: int = 0
    outbox_backlog: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def read_ops(raw_dir: Path) -> list[dict[str, Any]]:
    """Every logged operation of a step (all generator processes), by intended time."""
    ops = []
    for path in sorted(raw_dir.glob("ops-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    ops.append(json.loads(line))
                except ValueError:  # a line cut short by a killed generator
                    continue
    return sorted(ops, key=lambda op: op["t"])


def resend(call: Call, op: dict[str, Any], attempts: int = 20, pause_s: float = 0.5
           ) -> tuple[int, dict]:
    """Send a logged write again with its key and body until the shop gives a definite
    answer (not a 5xx, not silence); the last answer."""
    headers = {"Idempotency-Key": op["key"]}
    if op["op"] == "topup":
        path, body = "/billing/topup", {"amount_cents": op["amount"]}
    else:
        path, body = "/billing/checkout", {"items": op["items"]}
    status, answer = 0, {}
    for _ in range(attempts):
        try:
            status, answer = call("POST", path, body, headers)
        except OSError:
            status, answer = 0, {}
        if 200 <= status < 500:
            return status, answer
        time.sleep(pause_s)
    return status, answer


MAX_INBOX_PAGES = 10_000


def inbox_orders(call: Call) -> list[str]:
    """Every order id in the caller's inbox, every page (a repeat is kept: it is a
    duplicate notification). A shop without paging answers one page and no cursor."""
    orders: list[str] = []
    before: str | None = None
    for _ in range(MAX_INBOX_PAGES):
        path = "/notify/inbox" + (f"?before={quote(before)}" if before else "")
        page = call("GET", path, None, {})[1]
        orders += [n["order_id"] for n in page["notifications"]]
        cursor = page.get("next_before")
        if not cursor or cursor == before:
            return orders
        before = cursor
    raise RuntimeError(f"the inbox did not end within {MAX_INBOX_PAGES} pages")


def balance_of(call: Call) -> int:
    """The caller's balance in cents."""
    return call("GET", "/billing/balance", None, {})[1]["balance_cents"]


def _signed_amount(op: dict[str, Any], answer: dict[str, Any]) -> int:
    """What a write moves the balance by, in cents: + a top-up, - a checkout's total."""
    if op["op"] == "topup":
        return int(op["amount"])
    return -int(answer.get("total_cents", answer.get("total", 0)))


def judge(ops: list[dict[str, Any]], users: list[Call], balances_before: list[int],
          inbox_before: list[set[str]], settle: Callable[[], int]) -> Verdict:
    """Resolve the unknown writes of ``ops`` through ``users`` (one Call per user index) and
    check the shop against the log. ``balances_before`` and ``inbox_before`` are each user's
    balance (cents) and inbox order ids before the step; ``settle()``, called after the
    resends, waits for the shop to deliver what it owes and returns its outbox backlog."""
    verdict = Verdict(ops=len(ops))
    credited = [0] * len(users)
    charged = [0] * len(users)
    orders_by_key: dict[tuple[int, str], set[str]] = defaultdict(set)
    expected_orders: list[set[str]] = [set() for _ in users]
    for op in ops:
        if op["op"] not in WRITES:
            continue
        verdict.writes += 1
        who, status, answer = op["user"], op["status"], op
        if op["outcome"] == "unknown":
            verdict.unknown_before += 1
            balance = balance_of(users[who])
            status, answer = resend(users[who], op)
            moved = balance_of(users[who]) - balance
            if 200 <= status < 300 and moved == 0:
                verdict.resolved_done += 1
            elif 200 <= status < 300 and moved == _signed_amount(op, answer):
                verdict.resolved_by_resend += 1
            elif 200 <= status < 300:
                verdict.resolved_done += 1  # accounted for below: the balance will not add up
                verdict.problems.append(f"user {who}: resending {op['op']} {op['key']} moved "
                                        f"the balance by {moved} cents, not 0 or "
                                        f"{_signed_amount(op, answer)}")
            elif 400 <= status < 500:
                verdict.resolved_failed += 1
            else:
                verdict.unresolved += 1
                verdict.problems.append(f"user {who}: {op['op']} {op['key']} still unknown "
                                        f"after resending (last status {status})")
                continue
        if not 200 <= status < 300:
            continue
        if op["outcome"] != "unknown":
            # a definite answer is sent once more: a correct shop replays its receipt (the
            # same order, no second credit); one that executes it again is caught below
            again_status, again = resend(users[who], op)
            if op["op"] == "checkout" and 200 <= again_status < 300:
                orders_by_key[(who, op["key"])].add(again.get("order_id"))
        if op["op"] == "topup":
            credited[who] += op["amount"]
        else:
            order_id = answer.get("order_id")
            orders_by_key[(who, op["key"])].add(order_id)
            if order_id not in expected_orders[who]:
                expected_orders[who].add(order_id)
                charged[who] += int(answer.get("total_cents", answer.get("total", 0)))
    verdict.outbox_backlog = settle()
    for (who, key), orders in orders_by_key.items():
        if len(orders) > 1:
            verdict.double_charged_keys += 1
            verdict.problems.append(f"user {who}: key {key} answered with {len(orders)} orders")
    for who, call in enumerate(users):
        balance = balance_of(call)
        expected = balances_before[who] + credited[who] - charged[who]
        if balance != expected:
            gap = expected - balance
            if gap > 0:
                verdict.money_lost_cents += gap
            else:
                verdict.money_created_cents -= gap
            verdict.problems.append(f"user {who}: balance {balance} cents, expected {expected} "
                                    f"(before {balances_before[who]}, +{credited[who]} "
                                    f"credited, -{charged[who]} charged)")
        inbox = Counter(inbox_orders(call))
        new = {order for order in inbox if order not in inbox_before[who]}
        missing = expected_orders[who] - new
        duplicated = [order for order, count in inbox.items() if count > 1]
        unexpected = new - expected_orders[who]
        verdict.notifications_missing += len(missing)
        verdict.notifications_duplicated += len(duplicated)
        verdict.notifications_unexpected += len(unexpected)
        for what, orders in (("not notified", missing), ("notified more than once", duplicated),
                             ("notified but never charged", unexpected)):
            if orders:
                verdict.problems.append(f"user {who}: {len(orders)} order(s) {what}: "
                                        f"{sorted(orders)[:3]}")
    if verdict.outbox_backlog:
        verdict.problems.append(f"{verdict.outbox_backlog} event(s) still in the outbox")
    return verdict


def user_call(base_url: str, token: str) -> Call:
    """The public API as the user holding ``token``, one fresh keep-alive session."""
    from bench.system.shopclient import ShopClient

    session = ShopClient(base_url)
    session.token = token

    def call(method: str, path: str, body: dict | None, headers: dict[str, str]
             ) -> tuple[int, dict]:
        try:
            return session.call(method, path, body, headers)
        except (OSError, ValueError):
            session.reconnect()
            raise OSError(f"{method} {path}: no usable answer")

    return call


def snapshot(base_url: str, tokens: list[str]) -> dict[str, Any]:
    """Each user's balance (cents) and inbox order ids, before a step."""
    balances, inboxes = [], []
    for token in tokens:
        call = user_call(base_url, token)
        balances.append(balance_of(call))
        inboxes.append(sorted(inbox_orders(call)))
    return {"balances": balances, "inboxes": inboxes}


def check_step(shop: Any, raw_dir: Path, tokens: list[str], before: dict[str, Any],
               settle_timeout_s: float) -> Verdict:
    """The oracle on one step of a running shop: its log in ``raw_dir``, its users'
    ``tokens`` and ``before`` (a ``snapshot``)."""
    from bench.system.shopquery import ShopQueryError, outbox_backlog

    def settle() -> int:
        deadline = time.monotonic() + settle_timeout_s
        backlog = -1
        while time.monotonic() < deadline:
            try:
                backlog = outbox_backlog(shop)
            except ShopQueryError:
                backlog = -1
            if backlog == 0:
                time.sleep(0.5)  # delivered: let the last notifications commit
                return 0
            time.sleep(0.2)
        return max(backlog, 0) if backlog >= 0 else 1

    users = [user_call(shop.base_url, token) for token in tokens]
    return judge(read_ops(raw_dir), users, before["balances"],
                 [set(inbox) for inbox in before["inboxes"]], settle)
