"""The journey's intervals at the quick profile's shape (``tests.bench.coverage``): each kind
covers its known truth about 95% of the time under trial-to-trial drift from 0 to 40%, and
identical placements are rarely called different; where they fall short, by no more than the
docs/methodology.md says. Seeded: the same 1,000 simulated runs per drift each time."""
import pytest

from tests.bench.coverage import DRIFTS, quick_shape, simulate

pytestmark = pytest.mark.full  # ~30 s of simulation

REPETITIONS = 1000


@pytest.fixture(scope="module")
def coverage():
    shape = quick_shape()
    return {drift: simulate(shape, drift, REPETITIONS, seed=100 + i) for i, drift in enumerate(DRIFTS)}


@pytest.mark.parametrize("kind", ["p50", "CPU per request", "ratio p50", "ratio CPU"])
def test_intervals_cover_the_truth_95_percent_of_the_time(coverage, kind):
    for drift, found in coverage.items():
        assert 0.93 <= found[kind] <= 0.97, f"{kind} at {drift:.0%} drift: {found[kind]:.1%}"


def test_the_p99_ratio_covers_95_percent_up_to_20_percent_drift_and_near_90_at_40(coverage):
    # measured 92.7% at 40% drift (docs/methodology.md)
    for drift, found in coverage.items():
        low = 0.93 if drift <= 0.2 else 0.88
        assert low <= found["ratio p99"] <= 0.97, f"at {drift:.0%} drift: {found['ratio p99']:.1%}"


def test_a_placements_own_p99_undercovers_by_no_more_than_said(coverage):
    # the known shortfall: a p99 pooled over twelve trials of ~200 requests sits low of the
    # mixture's p99 when trials drift, and its interval covers 83-90% (docs/methodology.md)
    for drift, found in coverage.items():
        assert 0.80 <= found["p99"] <= 0.97, f"p99 at {drift:.0%} drift: {found['p99']:.1%}"


def test_identical_placements_are_rarely_called_different(coverage):
    for drift, found in coverage.items():
        # 5% nominal (1,000 runs: +-0.7%); the jackknife of a pooled p99 runs a little over it
        # (5.5-7.7% measured: docs/methodology.md)
        limit = 0.08 if drift <= 0.2 else 0.12
        assert found["A/A p99 significant"] <= limit, f"{drift:.0%}: {found['A/A p99 significant']:.1%}"
