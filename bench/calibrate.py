"""How fast can one generator process go? Set against wrk on the same endpoint and core.

The endpoint is the raw-HTTP floor (a minimal Flask app under the shop's gunicorn settings)
pinned to the system's CPUs; wrk and then our open-loop generator run pinned to the
generator's CPUs. wrk (closed loop, C, epoll) gives the most this endpoint delivers; the
generator is then stepped up through fractions of that rate, and the highest rate it
sustains validly (on time, nothing dropped, within 2% of the schedule, under 85% of a core)
is its capacity. Both numbers come from the same run, so the ratio is what to read.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.load.generator import TARGET, run_load
from bench.load.plan import LoadPlan
from bench.run import CpuPlan
from bench.system.floors import floor_servers
from bench.system.launcher import LaunchSettings

FRACTIONS = (0.5, 0.7, 0.8, 0.9, 1.0, 1.1)
BISECTIONS = 2


class CalibrationError(RuntimeError):
    """wrk is missing or printed nothing usable."""


@dataclass
class Calibration:
    wrk_rate: float  # req/s, closed loop
    steps: list[dict] = field(default_factory=list)  # one per generator rate tried

    @property
    def generator_rate(self) -> float:
        """The highest rate the generator sustained validly (0 if none)."""
        return max((s["rate"] for s in self.steps if s["valid"]), default=0.0)

    @property
    def ratio(self) -> float:
        return self.generator_rate / self.wrk_rate if self.wrk_rate else 0.0


def wrk_rate(url: str, cpus: tuple[int, ...] | None, duration_s: float, connections: int = 32) -> float:
    """wrk's requests/second against ``url`` with one thread on ``cpus``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise CalibrationError("wrk is not installed (Debian: apt-get install wrk)")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", url]
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise CalibrationError(f"could not read wrk's rate from:\n{out}")
    return float(found.group(1))


def calibrate(cpus: CpuPlan, settings: LaunchSettings, duration_s: float = 5.0,
              log_dir: Path | None = None) -> Calibration:
    """Measure wrk's rate, then step the generator through ``FRACTIONS`` of it until it fails."""
    settings = LaunchSettings(**{**settings.__dict__, "cpus": cpus.system})
    with tempfile.TemporaryDirectory(prefix="seambench-calibrate-") as scratch:
        logs = log_dir or Path(scratch)
        with floor_servers(settings, logs / "servers") as floors:
            url = floors.http_url + "/"
            wrk_rate(url, cpus.generator, 1.0)  # warm the endpoint up
            result = Calibration(wrk_rate(url, cpus.generator, duration_s))
            def attempt(rate: int) -> bool:
                load = run_load(TARGET, floors.http_url, LoadPlan(
                    rate_per_s=rate, duration_s=duration_s, warmup_s=1.0, arrival="constant",
                    output_dir=str(logs / f"generator-{rate}"), options={"path": "/"}),
                    cpus=cpus.generator)
                result.steps.append({
                    "rate": rate, "fraction_of_wrk": round(rate / result.wrk_rate, 3),
                    "valid": load.valid, "achieved_rate": round(load.achieved_rate, 1),
                    "dropped": load.dropped,
                    "generator_cpu": round(max(load.generator_cpu, default=0), 3),
                    "send_lateness_p99_us": load.lateness.get_value_at_percentile(99),
                    "p50_us": load.latency().get_value_at_percentile(50),
                    "p99_us": load.latency().get_value_at_percentile(99),
                    "invalid_reasons": load.invalid_reasons})
                return load.valid

            good, bad = 0, None
            for fraction in FRACTIONS:  # coarse steps up to the first failure...
                rate = round(result.wrk_rate * fraction)
                if not attempt(rate):
                    bad = rate
                    break
                good = rate
            for _ in range(BISECTIONS if bad else 0):  # ...then halve the gap
                middle = (good + bad) // 2
                if attempt(middle):
                    good = middle
                else:
                    bad = middle
    return result
