"""Fault plans (parsing, built-ins, errors named) and the chaos figures from a synthetic
operation log whose answers are known."""
from __future__ import annotations

import pytest

from bench.experiments.chaos.experiment import PROFILES, scaled
from bench.experiments.chaos.measures import availability, recovery_s, summarise, timeline
from bench.experiments.chaos.oracle import judge, outcome
from bench.system.faults import PLANS, Fault, FaultPlan, PlanError, load_plan, parse_plan


def test_every_fault_kind_against_every_dependency_is_built_in():
    assert {(p.faults[0].kind, p.faults[0].target) for p in PLANS.values()} == {
        (k, t) for k in ("crash", "pause", "restart", "latency", "errors", "reset", "blackhole")
        for t in ("auth", "billing", "search", "notify")}
    assert PLANS["latency-search"].faults[0].latency_ms == 200.0
    assert PLANS["errors-auth"].faults[0].share == 0.5
    plan = PLANS["crash-billing"]
    assert plan.faults[0].times() == [6.0, 14.0, 22.0, 30.0, 38.0] and plan.last_end_s() == 40.0


def test_a_plan_file_is_read(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[fault]]\nkind = "pause"\ntarget = "notify"\nat_s = 3\nfor_s = 1.5\n'
                    'repeat = 2\nevery_s = 4\n')
    plan = load_plan(str(path))
    assert plan == FaultPlan("mine", (Fault("pause", "notify", 3.0, 1.5, 2, 4.0),))
    assert FaultPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("doc, why", [
    ({}, "at least one"),
    ({"fault": [{"kind": "melt", "target": "billing", "at_s": 1, "for_s": 1}]}, "kind must be"),
    ({"fault": [{"kind": "crash", "target": "gateway", "at_s": 1, "for_s": 1}]}, "target must"),
    ({"fault": [{"kind": "crash", "target": "billing", "for_s": 1}]}, "at_s must"),
    ({"fault": [{"kind": "crash", "target": "billing", "at_s": 1, "for_s": 0}]}, "for_s must"),
    ({"fault": [{"kind": "crash", "target": "billing", "at_s": 1, "for_s": 2, "repeat": 3,
                 "every_s": 1}]}, "overlap"),
    ({"fault": [{"kind": "crash", "target": "billing", "at_s": 1, "for_s": 1, "when": 2}]},
     "unknown key"),
    ({"faults": []}, "unknown key"),
    ({"fault": [{"kind": "latency", "target": "search", "at_s": 1, "for_s": 1,
                 "latency_ms": 10, "jitter_ms": 20}]}, "jitter_ms must not exceed"),
    ({"fault": [{"kind": "errors", "target": "search", "at_s": 1, "for_s": 1,
                 "share": 1.5}]}, "share must be"),
])
def test_bad_plans_are_named(doc, why):
    with pytest.raises(PlanError, match=why):
        parse_plan(doc, "p.toml")


def test_unknown_plan_names_the_built_ins():
    with pytest.raises(PlanError, match="crash-billing"):
        load_plan("crash-everything")


def test_scaling_a_plan_for_a_short_run():
    plan = scaled(PLANS["crash-notify"], PROFILES["smoke"])
    fault = plan.faults[0]
    assert fault.repeat == 1 and fault.for_s == pytest.approx(0.6) and fault.at_s == pytest.approx(1.8)


def op(t, out="ok", latency_s=0.001, kind="search"):
    return {"t": t, "outcome": out, "done": t + latency_s, "op": kind, "user": 0,
            "status": 200 if out == "ok" else 503}


def test_recovery_is_measured_from_the_undo_to_a_second_of_answers():
    window = {"start": 10.0, "end": 12.0, "back": 12.5}
    ops = [op(9.0), op(10.5, "error"), op(12.2, "error"), op(12.7, "error"),
           *[op(12.8 + i * 0.1) for i in range(20)]]
    assert recovery_s(ops, window) == pytest.approx(0.8)  # 12.8 - 12.0
    assert recovery_s([op(12.1 + i * 0.1) for i in range(20)], window) == 0.0
    assert recovery_s([op(12.1, "error"), op(12.5)], window) is None  # log ends first


def test_availability_during_and_outside_the_windows():
    ops = [op(1.0), op(10.5, "unknown", kind="topup"), op(10.6, "failed"), op(11.0, "error"),
           op(13.0)]
    summary = summarise([(ops, {"faults": [{"start": 10.0, "end": 11.5, "back": None}],
                                "restarts": 1, "oracle": {"ok": True, "writes": 1}})])
    assert summary["availability"]["during"] == pytest.approx(1 / 3)  # the 4xx is an answer
    assert summary["availability"]["outside"] == 1.0
    assert summary["ops_during"] == 3 and summary["restarts"] == 1
    assert summary["oracle"] == {"ok": True, "writes": 1}
    assert availability([]) is None


def test_timeline_counts_per_second():
    ops = [op(100.2), op(100.9, "error"), op(102.5, latency_s=0.005),
           *[op(100.0 + i / 100, latency_s=0.002) for i in range(30)]]
    rows = timeline(ops, t0=100.0)
    assert [(r["t"], r["answered_per_s"], r["errors_per_s"]) for r in rows] == [
        (0.0, 31.0, 1.0), (1.0, 0.0, 0.0), (2.0, 1.0, 0.0)]
    # a per-second median only where the second has the 20 samples a p50 needs
    assert rows[0]["p50_ms"] == pytest.approx(2.0) and rows[2]["p50_ms"] is None
    assert rows[2]["max_ms"] == pytest.approx(5.0) and rows[1]["max_ms"] is None


def test_latency_during_a_fault_is_by_intended_time_with_the_one_sample_rule():
    window = {"start": 10.0, "end": 12.0, "back": None}
    held = [op(10.0 + i / 300, latency_s=3.0) for i in range(600)]  # answered after the fault
    fine = [op(20.0 + i / 100, latency_s=0.001) for i in range(1200)]
    summary = summarise([(held + fine, {"faults": [window], "restarts": 0, "oracle": {}})])
    during, outside = summary["latency_ms"]["during"], summary["latency_ms"]["outside"]
    assert during["samples"] == 600 and outside["samples"] == 1200
    assert during["p90"] == pytest.approx(3000.0)  # 600 samples: a p90 (needs 100) ...
    assert during["p99"] is None  # ... but no p99 (needs 1,000)
    assert during["max"] == pytest.approx(3000.0)
    assert outside["p99"] == pytest.approx(1.0)


def test_outcomes_of_the_operation_log():
    assert [outcome("checkout", s) for s in (201, 402, 503, 0)] == ["ok", "failed", "unknown",
                                                                     "unknown"]
    assert outcome("search", 503) == "error"


class FakeShop:
    """One user's wallet and inbox that honour keys, as the oracle expects a shop to."""

    def __init__(self, balance=0, lose_notification=False, credit_twice=False,
                 charge_again=False, credits=None):
        self.balance, self.orders, self.inbox, self.keys = balance, {}, [], {}
        self.lose_notification, self.credit_twice = lose_notification, credit_twice
        # charge_again: a checkout sent again with its key is executed again (a second order)
        self.charge_again = charge_again
        # credits: how many times each top-up (in arrival order) is really credited
        self.credits, self.topups = list(credits or []), 0

    def __call__(self, method, path, body, headers):
        if path == "/billing/balance":
            return 200, {"balance_cents": self.balance}
        if path.startswith("/notify/inbox"):
            return 200, self.inbox_page(path.partition("?before=")[2] or None)
        key = headers["Idempotency-Key"]
        if key in self.keys and not (self.charge_again and path == "/billing/checkout"):
            return self.keys[key]
        if path == "/billing/topup":
            times = self.credits[self.topups] if self.topups < len(self.credits) else 1
            self.topups += 1
            self.balance += body["amount_cents"] * (2 if self.credit_twice else times)
            answer = (200, {"balance_cents": self.balance})
        else:
            self.balance -= 100
            order = f"o{len(self.orders)}"
            self.orders[order] = 100
            if not self.lose_notification:
                self.inbox.append(order)
            answer = (201, {"order_id": order, "total_cents": 100})
        self.keys[key] = answer
        return answer


    def inbox_page(self, before):
        """Pages of 100 as the shop serves them: event id "eN" for the N-th notification."""
        notes = [{"event_id": f"e{i}", "order_id": o} for i, o in enumerate(self.inbox)]
        end = int(before[1:]) if before else len(notes)
        page = notes[max(0, end - 100):end]
        return {"notifications": page,
                "next_before": page[0]["event_id"] if len(page) == 100 else None}


def test_the_oracle_resolves_unknowns_and_finds_what_was_lost_or_made():
    def history(shop):
        # a top-up that happened but was not answered, and a checkout that never happened
        shop("POST", "/billing/topup", {"amount_cents": 500}, {"Idempotency-Key": "k1"})
        return [{"op": "topup", "user": 0, "key": "k1", "amount": 500, "status": 0,
                 "outcome": "unknown", "t": 1},
                {"op": "checkout", "user": 0, "key": "k2", "items": [], "status": 503,
                 "outcome": "unknown", "t": 2}]

    good = FakeShop()
    verdict = judge(history(good), [good], [0], [set()], lambda: 0)
    assert verdict.ok and verdict.unknown_before == 2
    # the top-up had happened (found done); the checkout had not (the resend did it)
    assert verdict.resolved_done == 1 and verdict.resolved_by_resend == 1
    lost = FakeShop(lose_notification=True)
    verdict = judge(history(lost), [lost], [0], [set()], lambda: 0)
    assert not verdict.ok and verdict.notifications_missing == 1
    doubled = FakeShop(credit_twice=True)
    verdict = judge(history(doubled), [doubled], [0], [set()], lambda: 0)
    assert verdict.money_created_cents == 500 and not verdict.ok
    stuck = FakeShop()
    assert not judge(history(stuck), [stuck], [0], [set()], lambda: 3).ok  # outbox not drained


def answered(shop, op: str, key: str, t: int, **what) -> dict:
    """One write sent to ``shop`` and answered, as the chaos scenario logs it."""
    if op == "topup":
        status, body = shop("POST", "/billing/topup", {"amount_cents": what["amount"]},
                            {"Idempotency-Key": key})
    else:
        status, body = shop("POST", "/billing/checkout", {"items": []}, {"Idempotency-Key": key})
    return {"op": op, "user": 0, "key": key, "status": status, "outcome": outcome(op, status),
            "t": t, "items": [], **what,
            **({"order_id": body["order_id"], "total": body["total_cents"]} if op != "topup" else {})}


def test_a_checkout_charged_again_under_its_key_is_a_double_charge():
    """Every answered checkout is sent once more with its key: a shop that executes it again
    names a second order for one key. (The oracle before this read one answer per key, so
    its double-charge check could not fire.)"""
    correct, careless = FakeShop(balance=1000), FakeShop(balance=1000, charge_again=True)
    for shop in (correct, careless):
        log = [answered(shop, "checkout", "c1", 1), answered(shop, "checkout", "c2", 2)]
        verdict = judge(log, [shop], [1000], [set()], lambda: 0)
        if shop is correct:
            assert verdict.ok, verdict.problems
        else:
            assert verdict.double_charged_keys == 2 and not verdict.ok


def test_one_credit_doubled_and_another_lost_do_not_cancel():
    """Top-ups of one amount let a doubled credit and a lost one cancel in the balance (ok,
    under the oracle's per-user sums); the scenario's amounts are distinct, so they cannot."""
    from bench.experiments.chaos.oracle import TOPUP_BASE_CENTS, topup_amount
    amounts = [topup_amount(0, 0), topup_amount(0, 1)]
    assert len({topup_amount(p, n) for p in range(64) for n in range(200)}) == 64 * 200
    for same, expect_ok in ((True, True), (False, False)):
        shop = FakeShop(credits=[2, 0])  # the first credited twice, the second never
        log = [answered(shop, "topup", f"k{i}", i,
                        amount=TOPUP_BASE_CENTS if same else amounts[i]) for i in range(2)]
        verdict = judge(log, [shop], [0], [set()], lambda: 0)
        assert verdict.ok is expect_ok, (same, verdict.problems)
    assert verdict.money_lost_cents == amounts[1] - amounts[0]


def test_the_whole_inbox_is_read_and_earlier_orders_count():
    """150 notifications before the step (two pages), then a checkout; a second notification
    of the oldest earlier order appears. Reading one page, and only orders new to the step,
    the oracle saw nothing wrong; it reads every page and counts every order."""
    from bench.experiments.chaos.oracle import inbox_orders
    shop = FakeShop(balance=1000)
    shop.inbox = [f"old{i}" for i in range(150)]
    before = set(inbox_orders(shop))
    assert len(before) == 150 and "old0" not in str(shop.inbox_page(None))  # not on page one
    log = [answered(shop, "checkout", "c1", 1)]
    assert judge(log, [shop], [1000], [before], lambda: 0).ok
    shop.inbox.insert(1, "old0")  # the earliest order notified a second time
    verdict = judge(log, [shop], [1000], [before], lambda: 0)
    assert verdict.notifications_duplicated == 1 and not verdict.ok
    assert "old0" in " ".join(verdict.problems)


@pytest.mark.parametrize("overrides, why", [
    ({"rate": "abc"}, "chaos.rate must be a number"),
    ({"users": 0}, "chaos.users must be a whole number"),
    ({"instances": 1.5}, "chaos.instances must be a whole number"),
    ({"plans": []}, "chaos.plans"),
    ({"duration_s": 5}, "must last until at least"),
    ({"plans": ["crash-everything"]}, "no fault plan"),
])
def test_bad_chaos_settings_are_refused_with_the_setting_named(overrides, why):
    from bench.experiments import get
    with pytest.raises(ValueError, match=why):
        get("chaos").settings("quick", overrides)
