"""From a results directory to ``summary.json``: every headline figure with a 95% interval.

Reads only files (``store.py`` lists them); never talks to a service. The summary's schema
is ``SCHEMA`` and is documented in README.md ("summary.json"). Latencies are µs; CPU is
CPU-ms per request (= CPU-seconds per 1000 requests); memory is MiB of RSS.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import hdr
from bench.recorder import tag_of
from bench.stats import Blocks, Estimate, bootstrap_percentile, bootstrap_trials, estimate, \
    percentile_of_counts, resample_weights
from bench.store import FLOORS, HISTOGRAMS, MANIFEST, STEPS, read_json

SCHEMA = "seambench.summary/1"
QUANTILES = {"p50_us": 50.0, "p99_us": 99.0, "p999_us": 99.9}
HOPS = (0, 1, 2, 3, 4)
CHAIN = ("auth", "billing", "search", "notify", "auth")
MIB = 1024 * 1024
FLOOR_HTTP, FLOOR_NESTED = "floor http", "floor nested"  # as bench.experiments names them
HOP_TARGET = 1.3  # one call should cost at most this many raw round trips


@dataclass
class RunData:
    dir: Path
    manifest: dict[str, Any]
    steps: pd.DataFrame
    floors: pd.DataFrame

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def placements(self) -> list[str]:
        return [t["name"] for t in self.config.get("topologies", [])]


def load(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{run_dir} is not a seambench run (no {MANIFEST})")
    def table(name: str) -> pd.DataFrame:
        path = run_dir / name
        return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
    return RunData(run_dir, read_json(run_dir / MANIFEST), table(STEPS), table(FLOORS))


def step_blocks(data: RunData, steps: pd.DataFrame, names: Sequence[str]) -> dict[str, Blocks]:
    """Each name's one-second interval histograms over ``steps`` (one row per trial), as
    Blocks aligned across names: block i is the same second of the same trial for all."""
    keyed: dict[str, dict[tuple, Any]] = {name: {} for name in names}
    tags = {tag_of(name): name for name in names}
    for _, step in steps.iterrows():
        for log in sorted((data.dir / step["raw_dir"]).glob("intervals-*.hlog")):
            for iv in hdr.read_interval_log(log):
                if iv.tag in tags:
                    keyed[tags[iv.tag]][(int(step["trial"]), log.name, iv.start_s)] = iv.histogram
    keys = sorted({k for per in keyed.values() for k in per})
    if not keys:
        return {}
    empty = hdr.new_histogram()
    dense = {name: [keyed[name].get(k, empty) for k in keys] for name in names}
    strata = [k[0] for k in keys]
    union = np.zeros(empty.counts_len, dtype=np.int64)
    for histograms in dense.values():
        for h in histograms:
            union += np.ctypeslib.as_array(h.counts).astype(np.int64)
    buckets = np.flatnonzero(union)  # shared, so the names' blocks can be added together
    return {name: Blocks.from_histograms(dense[name], strata, buckets) for name in names}


def percentile_estimates(blocks: Blocks, weights: np.ndarray) -> dict[str, Estimate]:
    out = {}
    for key, q in QUANTILES.items():
        point = percentile_of_counts(blocks.counts.sum(axis=0), blocks.values, q)[0] \
            if blocks.counts.size else None
        out[key] = estimate(point, bootstrap_percentile(blocks, q, weights))
    return out


class Analysis:
    def __init__(self, data: RunData, resamples: int | None = None, seed: int = 12345) -> None:
        self.data = data
        profile = data.config.get("profile", {})
        self.resamples = resamples or int(profile.get("bootstrap_resamples", 1000))
        self.rng = np.random.default_rng(seed)
        self.warnings: list[str] = []
        self.hop_cpu: dict[str, tuple[Estimate, np.ndarray]] = {}  # per placement, from hops()

    # -- floors --------------------------------------------------------------------------
    def floors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.data.floors.empty:
            return out
        for kind, rows in self.data.floors.groupby("floor"):
            histograms = [hdr.decode(h) for h in rows["histogram"]]
            # blocks of consecutive calls, resampled within their trial
            blocks = Blocks.from_histograms(histograms, rows["trial"].astype(int).tolist())
            weights = resample_weights(blocks.strata, self.resamples, self.rng)
            out[str(kind)] = {k: e.to_json() for k, e in percentile_estimates(blocks, weights).items()}
            out[str(kind)]["samples"] = blocks.total
            out[str(kind)]["_p50_resamples"] = bootstrap_percentile(blocks, 50, weights)
        if "http" in out and "http_nested" in out:
            http, nested = out["http"], out["http_nested"]
            point = nested["p50_us"]["value"] - http["p50_us"]["value"]
            out["hop"] = {"p50_us": estimate(point, nested["_p50_resamples"] - http["_p50_resamples"]).to_json(),
                          "_p50_resamples": nested["_p50_resamples"] - http["_p50_resamples"],
                          "meaning": "added p50 of one bare http.client hop made from inside a "
                                     "gunicorn worker (nested minus raw HTTP)"}
        return out

    # -- hops ----------------------------------------------------------------------------
    def hops(self, floors: dict[str, Any]) -> dict[str, Any]:
        """Per placement: p50/p99/p99.9 per k, the cost of one call (least-squares slope of
        p50 over k), and that cost against the floors measured in the same step (so the
        same generator, pace and seconds; resampled together, so the ratios are paired)."""
        steps = self.data.steps
        out: dict[str, Any] = {}
        if steps.empty or "experiment" not in steps:
            return out
        names = [f"chain k={k}" for k in HOPS] + [FLOOR_HTTP, FLOOR_NESTED]
        for placement in self.data.placements:
            rows = steps[(steps.experiment == "hops") & (steps.placement == placement)]
            if rows.empty:
                continue
            self._note_invalid(rows)
            blocks = step_blocks(self.data, rows, names)
            if not blocks:
                self.warnings.append(f"hops {placement}: no interval histograms found")
                continue
            weights = resample_weights(blocks[names[0]].strata, self.resamples, self.rng)
            p50: dict[str, tuple[float | None, np.ndarray]] = {}
            per_name: dict[str, Any] = {}
            for name in names:
                est = percentile_estimates(blocks[name], weights)
                per_name[name] = {**{key: e.to_json() for key, e in est.items()},
                                  "samples": blocks[name].total}
                p50[name] = (est["p50_us"].value, bootstrap_percentile(blocks[name], 50, weights))
            chain = [p50[f"chain k={k}"] for k in HOPS]
            centred = np.array(HOPS, dtype=float) - np.mean(HOPS)
            slope_point = (None if any(v is None for v, _ in chain)
                           else float(sum(c * v for c, (v, _) in zip(centred, chain)) / (centred @ centred)))
            slope_samples = sum(c * r for c, (_, r) in zip(centred, chain)) / (centred @ centred)
            entry: dict[str, Any] = {
                "per_k": {str(k): per_name[f"chain k={k}"] for k in HOPS},
                "per_call_us": estimate(slope_point, slope_samples).to_json(),
                "http_hops_per_chain": self.http_hops(placement),
                "cpu_ms_per_request": self._cpu(rows)[0].to_json(4),
                "floors": {}}
            self.hop_cpu[placement] = self._cpu(rows)
            http, nested = p50[FLOOR_HTTP], p50[FLOOR_NESTED]
            against = []
            if floors.get("http", {}).get("p50_us"):  # http.client, paced like this step, same trials
                raw = floors["http"]
                against.append(((raw["p50_us"]["value"], raw["_p50_resamples"]), "per_call_vs_http_floor"))
            if http[0] is not None and nested[0] is not None:
                bare = (nested[0] - http[0], nested[1] - http[1])
                entry["floors"] = {"http": per_name[FLOOR_HTTP], "nested": per_name[FLOOR_NESTED],
                                   "bare_hop_p50_us": estimate(*bare).to_json()}
                against.append((bare, "per_call_vs_hop_floor"))
            for (value, samples), key in against:
                if slope_point is None or not value or value <= 0:
                    continue
                if slope_point <= 0 or not est_excludes_zero(slope_samples):
                    entry[key] = {"value": None, "ci95": None, "target": HOP_TARGET, "meets_target": None,
                                  "note": "no measurable cost per call"}
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = estimate(slope_point / value, slope_samples / samples[: len(slope_samples)])
                entry[key] = {**ratio.to_json(2), "target": HOP_TARGET,
                              "meets_target": ratio.value is not None and ratio.value <= HOP_TARGET}
            out[placement] = entry
        return out

    def http_hops(self, placement: str) -> list[int]:
        """For k = 0..4, how many HTTP hops a ``/chain?k=`` request crosses in ``placement``
        (the gateway's hop included)."""
        topo = next(t for t in self.data.config["topologies"] if t["name"] == placement)
        owner = {c: p for p, comps in topo["processes"].items() for c in comps}
        out = []
        for k in HOPS:
            path = CHAIN[: k + 1]
            crossings = sum(owner[a] != owner[b] for a, b in zip(path, path[1:]))
            out.append(crossings + (1 if topo["gateway"] else 0))
        return out

    def _cpu(self, rows: pd.DataFrame) -> tuple[Estimate, np.ndarray]:
        """CPU-ms of the system per request that reached it, over the trials (t interval)."""
        served = rows["shop_completed"] if "shop_completed" in rows else rows["completed"]
        keep = served > 0
        rows, served = rows[keep], served[keep]
        if rows.empty:
            return Estimate(None, None), np.full(self.resamples, np.nan)
        point = rows.system_cpu_s.sum() * 1000 / served.sum()
        samples = bootstrap_trials((rows.system_cpu_s * 1000 / served).to_numpy(),
                                   served.to_numpy(), self.resamples, self.rng)
        return estimate(point, samples), samples

    def _note_invalid(self, rows: pd.DataFrame) -> None:
        for _, row in rows[~rows.valid.astype(bool)].iterrows():
            self.warnings.append(f"{row.experiment} {row.placement} at {row.rate:g} req/s, trial "
                                 f"{int(row.trial) + 1}: invalid ({row.invalid_reasons})")

    # -- journey -------------------------------------------------------------------------
    def journey(self) -> tuple[dict[str, Any], dict[tuple[str, float], dict[str, np.ndarray]]]:
        steps = self.data.steps
        out: dict[str, Any] = {}
        resampled: dict[tuple[str, float], dict[str, np.ndarray]] = {}
        if steps.empty:
            return out, resampled
        journey = steps[steps.experiment == "journey"]
        names = ("search", "checkout", "inbox", "topup")
        for placement in self.data.placements:
            per_rate: dict[str, Any] = {}
            for rate, rows in journey[journey.placement == placement].groupby("rate"):
                self._note_invalid(rows)
                blocks = step_blocks(self.data, rows, names)
                if not blocks:
                    continue
                strata = next(iter(blocks.values())).strata
                weights = resample_weights(strata, self.resamples, self.rng)
                everything = Blocks(sum(b.counts for b in blocks.values()), blocks[names[0]].values,
                                    strata)
                overall = percentile_estimates(everything, weights) if everything else {}
                completed = int(rows.completed.sum())
                entry = {
                    "trials": int(len(rows)), "valid": bool(rows.valid.astype(bool).all()),
                    "invalid_reasons": [str(r) for r in rows.invalid_reasons.dropna() if str(r)],
                    "scheduled_rate": round(float(rows.scheduled_rate.mean()), 2),
                    "achieved_rate": round(float(rows.achieved_rate.mean()), 2),
                    "completed": completed,
                    "error_rate": round(float(rows.errors.sum()) / completed, 5) if completed else None,
                    **{key: e.to_json() for key, e in overall.items()},
                    "per_name": {n: {k: e.to_json() for k, e in percentile_estimates(blocks[n], weights).items()}
                                 for n in names if blocks[n].total},
                    "cpu_ms_per_request": self._cpu(rows)[0].to_json(4),
                    "rss_mib": round(float(rows.system_rss_max_bytes.max()) / MIB, 1),
                    "generator_cpu_max": round(float(rows.generator_cpu.max()), 3),
                    "lateness_p99_us": int(rows.lateness_p99_us.max()),
                }
                if "lag_p50_us" in rows and rows.lag_p50_us.notna().any():
                    lag = self._lag(placement, float(rate))
                    entry["notification_lag_us"] = lag
                    entry["payments"] = int(rows.payments.sum())
                    entry["notifications"] = int(rows.notifications.sum())
                    if entry["notifications"] < entry["payments"]:
                        self.warnings.append(
                            f"journey {placement} at {float(rate):g} req/s: {entry['payments'] - entry['notifications']} "
                            f"of {entry['payments']} payments were not yet notified when the lag was read "
                            f"(the lag percentiles leave the slowest out)")
                per_rate[f"{float(rate):g}"] = entry
                if everything:
                    resampled[(placement, float(rate))] = {
                        key: bootstrap_percentile(everything, q, weights) for key, q in QUANTILES.items()}
                    resampled[(placement, float(rate))]["cpu"] = self._cpu(rows)[1]
            out[placement] = per_rate
        return out, resampled

    def _lag(self, placement: str, rate: float) -> dict[str, Any]:
        path = self.data.dir / HISTOGRAMS
        prefix = f"journey/{placement}/r{rate:g}/"
        merged = hdr.merge(iv.histogram for iv in hdr.read_interval_log(path)
                           if iv.tag.startswith(prefix) and iv.tag.endswith("/notification_lag"))
        return {"count": merged.get_total_count(),
                **{k: merged.get_value_at_percentile(q) for k, q in QUANTILES.items()},
                "max_us": merged.get_max_value()}

    def throughput_at_objective(self, journey: dict[str, Any]) -> dict[str, Any]:
        """Per placement, where on the ladder p99 crosses the objective (valid rungs with at
        most 1% errors only)."""
        objective_us = float(self.data.config.get("p99_objective_ms", 50)) * 1000
        out = {}
        for placement, rungs in journey.items():
            rates = sorted(rungs, key=float)
            passing = [r for r in rates if meets_objective(rungs[r], objective_us)]
            best = max(passing, key=float, default=None)
            above = [r for r in rates if best is None or float(r) > float(best)]
            if best is None:
                text = f"below {rates[0]} req/s" if rates else "not measured"
            elif not above:
                text = f"at least {best} req/s (the top of the ladder)"
            else:
                text = f"between {best} and {above[0]} req/s"
            out[placement] = {"highest_passing_rate": float(best) if best else None, "text": text,
                              "objective_p99_ms": objective_us / 1000}
        return out


def est_excludes_zero(samples: np.ndarray) -> bool:
    """True when the central 95% of bootstrap ``samples`` lies above zero."""
    finite = samples[np.isfinite(samples)]
    return len(finite) > 1 and float(np.percentile(finite, 2.5)) > 0


def _ratio(num: Estimate | None, den: Estimate | None, num_samples: np.ndarray,
           den_samples: np.ndarray) -> dict[str, Any]:
    if num is None or den is None or not num.value or not den.value:
        return {"value": None, "ci95": None, "significant": False}
    with np.errstate(invalid="ignore", divide="ignore"):
        est = estimate(num.value / den.value, num_samples / den_samples)
    return {**est.to_json(3), "significant": est.excludes(1.0)}


def summarize(run_dir: str | Path, resamples: int | None = None) -> dict[str, Any]:
    """The whole summary document of a run (see ``SCHEMA``)."""
    data = load(run_dir)
    analysis = Analysis(data, resamples)
    placements = data.placements
    baseline = placements[0] if placements else None
    floors = analysis.floors()
    hops = analysis.hops(floors)
    journey, resampled = analysis.journey()
    for other in placements[1:]:  # CPU per HTTP hop: the extra CPU per extra hop crossed
        if other in hops and baseline in hops and other in analysis.hop_cpu and baseline in analysis.hop_cpu:
            extra_hops = np.mean(hops[other]["http_hops_per_chain"]) - np.mean(hops[baseline]["http_hops_per_chain"])
            (cpu_o, s_o), (cpu_b, s_b) = analysis.hop_cpu[other], analysis.hop_cpu[baseline]
            if extra_hops > 0 and cpu_o.value is not None and cpu_b.value is not None:
                hops[other]["cpu_ms_per_hop"] = estimate((cpu_o.value - cpu_b.value) / extra_hops,
                                                         (s_o - s_b) / extra_hops).to_json(4)
    ratios: dict[str, Any] = {}
    for other in placements[1:]:
        per_rate = {}
        for rate in journey.get(baseline, {}):
            a, b = journey[baseline][rate], journey.get(other, {}).get(rate)
            ra, rb = resampled.get((baseline, float(rate))), resampled.get((other, float(rate)))
            if not b or ra is None or rb is None:
                continue
            per_rate[rate] = {
                **{key: _ratio(_est(b.get(key)), _est(a.get(key)), rb[key], ra[key]) for key in QUANTILES},
                "cpu_ms_per_request": _ratio(_est(b["cpu_ms_per_request"]), _est(a["cpu_ms_per_request"]),
                                             rb["cpu"], ra["cpu"]),
                "rss": {"value": round(b["rss_mib"] / a["rss_mib"], 3) if a["rss_mib"] else None}}
        ratios[f"{other}/{baseline}"] = per_rate
    throughput = analysis.throughput_at_objective(journey)
    for kind in floors.values():
        kind.pop("_p50_resamples", None)
    summary = {"schema": SCHEMA, "run_id": data.manifest.get("run_id"),
               "complete": bool(data.manifest.get("complete")),
               "placements": placements, "baseline": baseline,
               "comparison": " vs ".join(placements),
               "profile": data.config.get("profile", {}).get("name"),
               "trials": data.config.get("profile", {}).get("trials"),
               "confidence": 0.95, "bootstrap_resamples": analysis.resamples,
               "cpu_note": data.manifest.get("cpu_note", ""),
               "environment": data.manifest.get("environment", {}),
               "seed": data.config.get("seed"), "arrival": data.config.get("arrival"),
               "floors": floors, "hops": hops, "journey": journey, "ratios": ratios,
               "throughput_at_objective": throughput}
    summary["headline_rate"] = headline_rate(
        journey, placements, float(data.config.get("p99_objective_ms", 50)) * 1000)
    summary["headlines"] = headlines(summary)
    warnings = list(dict.fromkeys(analysis.warnings))
    if not summary["complete"]:
        reason = data.manifest.get("incomplete_reason", "stopped early")
        warnings.insert(0, f"this run is INCOMPLETE ({reason}): figures cover the steps that finished")
    for row in summary["headlines"]:
        if row.get("ratio") and row.get("significant") is False:
            warnings.append(f"{row['label']}: not significant (the 95% interval includes 1.0)")
    summary["warnings"] = warnings
    return summary


def _est(doc: dict | None) -> Estimate | None:
    if not doc:
        return None
    ci = doc.get("ci95")
    return Estimate(doc.get("value"), tuple(ci) if ci else None)


MAX_ERROR_RATE = 0.01


def meets_objective(rung: dict[str, Any], objective_us: float) -> bool:
    """A journey rung is usable at the objective: valid, at most 1% errors, p99 within it."""
    p99 = rung.get("p99_us", {}).get("value")
    return (bool(rung.get("valid")) and p99 is not None and p99 <= objective_us
            and (rung.get("error_rate") or 0) <= MAX_ERROR_RATE)


def headline_rate(journey: dict[str, Any], placements: list[str], objective_us: float) -> str | None:
    """The journey rate the headline ratios are quoted at: the highest rate at which every
    placement met the objective (valid, <= 1% errors, p99 within it); else the lowest rate."""
    rates = sorted(set.intersection(*(set(journey.get(p, {})) for p in placements)) if placements
                   else set(), key=float)
    if not rates:
        return None
    passing = [r for r in rates if all(meets_objective(journey[p][r], objective_us) for p in placements)]
    return passing[-1] if passing else rates[0]


def headlines(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The few figures printed at the end of a run, each with its 95% interval."""
    rows: list[dict[str, Any]] = []
    baseline, rate = summary["baseline"], summary["headline_rate"]
    for pair, per_rate in summary["ratios"].items():
        at = per_rate.get(rate) if rate else None
        if not at:
            continue
        for key, label in (("p50_us", "journey p50"), ("p99_us", "journey p99"),
                           ("cpu_ms_per_request", "CPU per request")):
            r = at[key]
            rows.append({"label": f"{label} {pair} @ {rate} req/s", "value": r["value"], "unit": "x",
                         "ci95": r["ci95"], "ratio": True, "significant": r["significant"],
                         "note": "" if r["significant"] else "not significant"})
    for placement, hop in summary["hops"].items():
        if placement == baseline and len(summary["placements"]) > 1:
            continue
        rows.append({"label": f"one call, {placement} (p50 slope over k)",
                     "value": hop["per_call_us"]["value"], "unit": "us", "ci95": hop["per_call_us"]["ci95"]})
        if "cpu_ms_per_hop" in hop:
            rows.append({"label": f"CPU per HTTP hop, {placement} (both ends)",
                         "value": hop["cpu_ms_per_hop"]["value"], "unit": "ms",
                         "ci95": hop["cpu_ms_per_hop"]["ci95"]})
        for key, what in (("per_call_vs_http_floor", "raw HTTP round trip"),
                          ("per_call_vs_hop_floor", "bare hop from a worker")):
            if key in hop:
                r = hop[key]
                met = {True: "meets", False: "misses", None: "no cost to compare:"}[r["meets_target"]]
                rows.append({"label": f"one call / {what}, {placement}", "value": r["value"],
                             "unit": "x", "ci95": r["ci95"], "note": f"{met} target <= {r['target']}x"})
        floors = hop.get("floors", {})
        if floors:
            rows.append({"label": "minimal endpoint via the load generator, p50 (same step)",
                         "value": floors["http"]["p50_us"]["value"], "unit": "us",
                         "ci95": floors["http"]["p50_us"]["ci95"]})
            rows.append({"label": "bare hop from a worker, added p50 (same step)",
                         "value": floors["bare_hop_p50_us"]["value"], "unit": "us",
                         "ci95": floors["bare_hop_p50_us"]["ci95"]})
    raw = summary["floors"].get("http", {}).get("p50_us")
    if raw:
        rows.append({"label": "raw keep-alive HTTP round trip p50 (http.client, paced)",
                     "value": raw["value"], "unit": "us", "ci95": raw["ci95"]})
    for placement, t in summary["throughput_at_objective"].items():
        rows.append({"label": f"journey throughput at p99 <= {t['objective_p99_ms']:g} ms, {placement}",
                     "value": t["text"], "unit": ""})
    return rows
