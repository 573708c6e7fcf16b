"""Test tiers, in the style of pytest's documented ``--runslow`` recipe.

* fast (the default, the README's test command): unit tests, the instruments against known
  truth, and the contract suite on the in-process monolith and one served split shop;
* full (``--full``, what CI runs): everything, the other placements and tests/e2e and
  tests/integration included;
* nightly (``--nightly``, implies full): what is too long even for CI, e.g. every fault kind
  against every dependency in one chaos run.

The tier is assigned here, by directory and by placement, so a new end-to-end file cannot
land in the fast tier by accident; a test elsewhere that needs the full tier says so with
``@pytest.mark.full``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from shop.storage.sqlite import SqliteDatabase
from tests.placements import FAST_PLACEMENTS, PLACEMENTS

TESTS = Path(__file__).resolve().parent
FULL_DIRS = (TESTS / "e2e", TESTS / "integration")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seambench tiers")
    group.addoption("--full", action="store_true",
                    help="run the full tier: every placement, tests/e2e and tests/integration")
    group.addoption("--nightly", action="store_true",
                    help="run the nightly tier too (implies --full)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full: in the full tier only (run with --full)")
    config.addinivalue_line("markers", "nightly: in the nightly tier only (run with --nightly)")


def tier_of(item: pytest.Item) -> str:
    """"nightly", "full" or "fast": the cheapest tier ``item`` runs in."""
    if item.get_closest_marker("nightly"):
        return "nightly"
    path = Path(str(item.path)).resolve()
    if item.get_closest_marker("full") or any(d in path.parents for d in FULL_DIRS):
        return "full"
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(isinstance(v, str) and v in PLACEMENTS and v not in FAST_PLACEMENTS
           for v in params.values()):
        return "full"
    return "fast"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    allowed = {"fast"}
    if config.getoption("--full") or config.getoption("--nightly"):
        allowed.add("full")
    if config.getoption("--nightly"):
        allowed.add("nightly")
    keep, drop = [], []
    for item in items:
        (keep if tier_of(item) in allowed else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    tier = ("nightly" if config.getoption("--nightly") else
            "full" if config.getoption("--full") else "fast (--full for every tier)")
    return f"seambench test tier: {tier}"


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    database = SqliteDatabase(f"sqlite:///{tmp_path / 'unit.db'}")
    yield database
    database.close()
