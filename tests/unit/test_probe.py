import pytest

from bench.probe import ProbeResult


def test_percentiles_interpolate_between_order_statistics():
    result = ProbeResult("m", [float(v) for v in range(1, 101)])  # 1..100 µs
    assert result.percentile(0) == 1 and result.percentile(100) == 100
    assert result.percentile(50) == pytest.approx(50.5)
    assert result.percentile(99) == pytest.approx(99.01)


def test_a_single_sample_still_summarises():
    summary = ProbeResult("m", [120.0]).summary()
    assert summary["p50_us"] == summary["p99_us"] == summary["max_us"] == 120.0
    with pytest.raises(ValueError):
        ProbeResult("m", []).percentile(50)
