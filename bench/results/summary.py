"""From a results directory to the typed ``RunSummary``: each experiment analyses its own
steps; this module adds what is common (identity, validity, warnings, the exit code).

Reads only files, through ``bench.results.reader``; never talks to a service.
"""
from __future__ import annotations

from pathlib import Path

from bench.experiments import get
from bench.results.model import EXIT_NOTHING_VALID, EXIT_VIOLATION, RunSummary
from bench.results.reader import RunData, load_run

ANALYSIS_SEED = 12345  # bootstrap resampling is seeded: the same files give the same summary


def summarize(run: RunData | str | Path, resamples: int | None = None) -> RunSummary:
    """The analysed run. ``resamples``: bootstrap resamples (default: the profile's)."""
    data = run if isinstance(run, RunData) else load_run(run)
    profile = data.config.get("profile", {})
    resamples = resamples or int(profile.get("bootstrap_resamples", 1000))
    experiments, headlines, warnings = {}, [], []
    nothing_valid: list[str] = []
    violations: list[str] = []
    for name in data.experiments:
        try:
            experiment = get(name)
        except KeyError as exc:
            warnings.append(f"{exc.args[0]}: its steps are not analysed")
            continue
        analysis = experiment.analyse(data, resamples, ANALYSIS_SEED)
        experiments[name] = analysis.result
        headlines += analysis.headlines
        warnings += analysis.warnings
        if analysis.rests_on_nothing:
            nothing_valid.append(name)
        violations += analysis.violations
    invalid = [f"{s.key.experiment} {s.key.placement} {s.key.rung} trial {s.key.trial + 1}: "
               f"{'; '.join(s.invalid_reasons)}" for s in data.steps if not s.valid]
    complete = bool(data.manifest.get("complete"))
    if not complete:
        reason = data.manifest.get("incomplete_reason", "stopped early")
        warnings.insert(0, f"this run is INCOMPLETE ({reason}): figures cover the steps that finished")
    for name in nothing_valid:
        warnings.append(f"{name}: a headline figure rests on no valid step (exit code "
                        f"{EXIT_NOTHING_VALID})")
    for violation in violations:
        warnings.insert(0, f"{violation} (exit code {EXIT_VIOLATION})")
    exit_code = EXIT_VIOLATION if violations else EXIT_NOTHING_VALID if nothing_valid else 0
    return RunSummary(
        run_id=str(data.manifest.get("run_id", data.dir.name)), complete=complete,
        placements=data.placements, profile=str(profile.get("name", "?")),
        trials=int(profile.get("trials", 0)), seed=data.config.get("seed"),
        environment=data.manifest.get("environment", {}),
        cpu_note=data.manifest.get("cpu_note", ""), steps=[s.to_row() for s in data.steps],
        experiments=experiments, headlines=headlines, warnings=list(dict.fromkeys(warnings)),
        invalid_steps=invalid, exit_code=exit_code)
