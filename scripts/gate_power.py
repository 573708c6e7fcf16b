"""How often the CI gate catches a 30% slower hop, and how often it cries wolf.

    .venv/bin/python scripts/gate_power.py --runs K [--base HEAD] [--fraction 0.3] [--simulate N]
    .venv/bin/python scripts/gate_power.py --runs 0 --simulate N   # the runs already made

Runs the CI gate (scripts/ci-gate: this checkout against --base in one run, checked
strictly against budgets/ci.toml) 2K times, alternating: unchanged, then with every HTTP
hop of this checkout's placements made slower by ``fraction`` of the hop the unchanged run
just measured in microservices@base (``--hop-delay-ms``; the @base placements never get the
delay). Prints a Markdown table, one row per gate run (every run under --results, each
checked again against budgets/ci.toml as it is now), and the counts: slowed runs that
failed the gate (target: at least 9 in 10), unchanged runs that failed it (at most 1 in
10); writes it to --results/table.md. ``--runs 0`` makes no run: the table of the runs
already there. Runs one benchmark at a time;
each takes about 6 minutes on 2 cores, more when the gate measures again.

``--simulate N`` (after the runs, or alone on the runs already under --results) adds a
simulation of the hop budget, the gate's detector, from the measured per-trial log ratios
of one call's cost (microservices over microservices@base): N gates each way, each drawing
its trials from the unchanged runs' pooled pairs (shifted by the slowed runs' mean change
for the slowed condition), judged as `seambench check` judges a growth, measured again with
twice the trials when noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
GATE = ROOT / "scripts" / "ci-gate"
HOPPED = "microservices@base"  # whose hop sets the delay: the build without it
BUDGETS = ROOT / "budgets" / "ci.toml"


def deciding_run(results: Path) -> Path:
    """The run the gate's verdict rests on: the second when it measured again."""
    for attempt in ("again", "first"):
        runs = sorted(p for p in (results / attempt).glob("*/") if p.is_dir())
        if runs:
            return runs[-1]
    raise FileNotFoundError(f"no run under {results}")


def hop_ms(run_dir: Path) -> float:
    """One call's cost in ms (the p50 slope over chain length) in microservices@base."""
    summary = json.loads((run_dir / "summary.json").read_text())
    per_call = summary["experiments"]["hops"]["placements"][HOPPED]["per_call_us"]
    return float(per_call["value"]) / 1000


def failures(results: Path, path: Path | None = None) -> list[str]:
    """'breach: hop microservices: ...' for each failing testcase of the deciding check."""
    path = path or results / "junit.xml"
    if not path.exists():
        return ["no junit.xml (the benchmark failed)"]
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            out.append(f"{bad.get('type')}: {case.get('name')}")
    return out


def hop_logs(run_dir: Path) -> list[float]:
    """Per trial, ln(one call in microservices / one call in microservices@base)."""
    doc = json.loads((run_dir / "summary.json").read_text())["experiments"]["hops"]
    new = doc["placements"]["microservices"]["per_call_us_by_trial"]
    old = doc["placements"][HOPPED]["per_call_us_by_trial"]
    return [math.log(new[t] / old[t]) for t in sorted(set(new) & set(old))
            if new[t] > 0 and old[t] > 0]


def growth_verdict(logs: list[float], limit: float) -> str:
    """breach / pass / noisy, as bench.budgets.verdicts.growth judges a paired ratio."""
    n = len(logs)
    mean = statistics.fmean(logs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    value, low, high = (math.exp(x) for x in (mean, mean - half, mean + half))
    if value > 1 + limit and low > 1:
        return "breach"
    return "pass" if high <= 1 + limit else "noisy"


def simulate(results: Path, gates: int, limit: float, trials: int, seed: int = 1) -> str:
    """The hop budget's failure rate over ``gates`` simulated gates each way: unchanged,
    a hop exactly 30% slower, and as much slower as the slowed runs measured (the injected
    sleep costs more than asked: the scheduler wakes it late)."""
    plain = [x for d in sorted(results.glob("unchanged-*")) for x in hop_logs(deciding_run(d))]
    slow = [x for d in sorted(results.glob("slowed-*")) for x in hop_logs(deciding_run(d))]
    if len(plain) < 3 or len(slow) < 3:
        return "simulation: too few measured pairs"
    centre = statistics.fmean(plain)
    measured = statistics.fmean(slow) - centre
    rng = random.Random(seed)
    failed = {}
    for name, offset in (("unchanged", 0.0), ("+30%", math.log(1.3)),
                         (f"{math.exp(measured) - 1:+.0%} (as measured)", measured)):
        count = 0
        for _ in range(gates):
            verdict = growth_verdict([rng.choice(plain) + offset for _ in range(trials)], limit)
            if verdict == "noisy":  # the gate measures again, with twice the trials
                verdict = growth_verdict([rng.choice(plain) + offset
                                          for _ in range(2 * trials)], limit)
            count += verdict != "pass"
        failed[name] = count
    said = ", ".join(f"{name}: {count} of {gates}" for name, count in failed.items())
    return (f"simulated hop budget alone (growth <= +{limit:.0%}, {trials} trials, again with "
            f"{2 * trials} when noisy), trials drawn from the {len(plain)} unchanged pairs "
            f"(their mean {math.exp(centre) - 1:+.1%} kept): gates failing, {said}")


def gate(results: Path, base: str, seed: int, extra: list[str]) -> int:
    cmd = [str(GATE), str(results), base, "--seed", str(seed), *extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="gate runs each way (K)")
    parser.add_argument("--base", default="HEAD", help="the ref both conditions run beside")
    parser.add_argument("--fraction", type=float, default=0.3, help="the hop's slowdown")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "power")
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--simulate", type=int, default=0, metavar="N",
                        help="also simulate N gates each way from the measured pairs")
    parser.add_argument("--limit", type=float, default=0.20,
                        help="the hop budget's growth limit, for the simulation")
    parser.add_argument("--hop-trials", type=int, default=10,
                        help="the gate's hop trials, for the simulation")
    args = parser.parse_args()
    if args.runs < 0 or not 0 < args.fraction < 10:
        parser.error("--runs must be at least 0 and --fraction in (0, 10)")
    for i in range(args.runs):
        seed = args.first_seed + i
        plain = args.results / f"unchanged-{i + 1}"
        gate(plain, args.base, seed, [])
        delay = round(args.fraction * hop_ms(deciding_run(plain)), 3)
        gate(args.results / f"slowed-{i + 1}", args.base, seed, ["--hop-delay-ms", str(delay)])
    text = table(args.results)
    if args.simulate:
        text += "\n" + simulate(args.results, args.simulate, args.limit, args.hop_trials) + "\n"
    (args.results / "table.md").write_text(text)
    print(text)
    return 0


def table(results: Path) -> str:
    """One row per gate run under ``results``, its deciding run checked again against the
    budgets file as it is now (so the table follows a limit that changed since), and the
    counts."""
    lines = ["| condition | run | hop delay | hop growth (95% CI) | gate | failing budgets |",
             "|---|---|---|---|---|---|"]
    counts = {"unchanged": [0, 0], "slowed": [0, 0]}
    for kind in ("unchanged", "slowed"):
        for directory in sorted(results.glob(f"{kind}-*"), key=lambda p: int(p.name.split("-")[1])):
            run = deciding_run(directory)
            junit = directory / "recheck.xml"
            code = subprocess.run([str(ROOT / ".venv" / "bin" / "seambench"), "check", str(run),
                                   "--budgets", str(BUDGETS), "--strict", "--allow-invalid",
                                   "--junit", str(junit)], capture_output=True, cwd=ROOT).returncode
            config = json.loads((run / "manifest.json").read_text())["config"]
            delay = float(config["launch"]["hop"]["added_latency_ms"])
            bad = failures(directory, junit)
            counts[kind][0] += 1
            counts[kind][1] += code != 0
            gate_text = {0: "pass", 1: "FAIL (breach)", 3: "FAIL (undecided)"}.get(code, f"exit {code}")
            lines.append(f"| {kind} | {run.name} | {delay:.3f} ms | {hop_growth(junit)} | "
                         f"{gate_text} | {'; '.join(bad) or 'none'} |")
    lines += ["", f"slowed runs failing the gate: {counts['slowed'][1]} of {counts['slowed'][0]}; "
                  f"unchanged runs failing it: {counts['unchanged'][1]} of {counts['unchanged'][0]}"]
    return "\n".join(lines) + "\n"


def hop_growth(junit: Path) -> str:
    """The hop budget's measured growth, as the check printed it."""
    for case in ET.parse(junit).getroot().iter("testcase"):
        if "one call growth" in (case.get("name") or ""):
            out = case.findtext("system-out") or ""
            return out.removeprefix("measured ").split("; limit")[0]
    return "n/a"


if __name__ == "__main__":
    sys.exit(main())
