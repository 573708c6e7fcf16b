"""``seambench check``: the budgets file against a run, the table, JUnit XML, the job summary.

Exit codes: 0 no breach (noisy and missing verdicts are printed, and do not fail unless
``strict``); 1 a breach; 3 with ``strict``, no breach but a noisy or missing verdict
(undecided: a gate measures more, then fails); 2 unusable input:
a budgets file that cannot be read or is malformed (its line and key named), a run that is
not a run, an incomplete run, an invalid step under a budget, or a baseline from another
environment, each refused unless the matching ``--allow-*`` flag says otherwise.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench import exitcodes
from bench.budgets.evaluate import Allowances, Check, Unusable, evaluate
from bench.budgets.metrics import RunView
from bench.budgets.output import junit_error_xml, junit_xml, render_markdown, render_text
from bench.budgets.spec import BudgetFileError, load_budgets
from bench.render.document import md_escape

EXIT_UNUSABLE = exitcodes.UNUSABLE  # the input cannot be used (EXIT_PASS, EXIT_BREACH: see evaluate.Check)
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def load_view(run_dir: Path, name: str) -> RunView:
    """A run directory as the budgets see it (its summary computed in memory when it has
    no summary.json); Unusable when it cannot be read."""
    from bench.render.compare import load_summary
    from bench.results.reader import load_run
    try:
        data = load_run(run_dir)
        summary = load_summary(run_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to read a run is unusable input
        raise Unusable(f"{name} {run_dir} cannot be read: {exc}") from None
    return RunView(summary, data, data.config, name)


def check(run_dir: Path, budgets_path: Path, baseline_dir: Path | None = None,
          allow: Allowances = Allowances()) -> Check:
    """Evaluate; raises Unusable or BudgetFileError for input that cannot be checked."""
    budgets = load_budgets(budgets_path)
    run = load_view(run_dir, "run")
    baseline = load_view(baseline_dir, "baseline") if baseline_dir is not None else None
    return evaluate(budgets, run, baseline, allow)


def run_check(run_dir: Path, budgets_path: Path, baseline_dir: Path | None, junit: Path | None,
              markdown: Path | None, allow: Allowances, strict: bool,
              echo: Callable[[str], None], echo_err: Callable[[str], None]) -> int:
    """The command: print, write, and return the exit code. ``echo``/``echo_err`` print a
    string to stdout/stderr; ``junit`` and ``markdown`` are files to write."""
    from bench.results.store import write_text_atomic
    try:
        result = check(run_dir, budgets_path, baseline_dir, allow)
    except (Unusable, BudgetFileError) as exc:
        message = str(exc)
        echo_err(f"seambench check: error: {message}")
        text = f"## seambench check: unusable input\n\n{md_escape(message)}\n"
        if junit is not None:
            write_text_atomic(junit, junit_error_xml(message))
        if markdown is not None:
            write_text_atomic(markdown, text)
        _append_summary(text)
        return EXIT_UNUSABLE
    code = result.exit_code(strict)
    echo(render_text(result, code))
    text = render_markdown(result, code)
    for path, content in ((junit, junit_xml(result, strict)), (markdown, text)):
        if path is not None:
            write_text_atomic(path, content)
            echo_err(f"written: {path}")
    _append_summary(text)
    return code


def _append_summary(markdown: str) -> None:
    path = os.environ.get(STEP_SUMMARY)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown + "\n")
