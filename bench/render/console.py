"""What ``seambench run`` shows on the terminal: progress with an ETA, then the headlines."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn
from rich.progress import Progress as RichProgress
from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.experiments import Progress
from bench.render import display
from bench.results.model import RunSummary


class RunConsole:
    """A rich progress bar over a run's steps (on stderr), and the closing table (stdout)."""

    def __init__(self, run_dir: Path, steps: int) -> None:
        self.run_dir = run_dir
        self.steps = steps
        self._err = Console(stderr=True)
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self._err, transient=False,
                                 disable=not self._err.is_terminal)
        self._task = self._bar.add_task("starting", total=steps)

    def __enter__(self) -> "RunConsole":
        self._err.print(f"seambench run: writing {self.run_dir}")
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def progress(self) -> Progress:
        plain = not self._err.is_terminal  # a log file gets one line per step, with the ETA
        started = time.monotonic()

        def on_step(done: int, total: int, what: str) -> None:
            self._bar.update(self._task, completed=done, description=what)
            if plain:
                left = (time.monotonic() - started) / done * (total - done)
                self._err.print(f"[{done}/{total}] {what} done; about {left:.0f}s left")

        def on_phase(what: str) -> None:
            self._bar.update(self._task, description=what)
            if plain:
                self._err.print(what)

        return Progress(on_step, on_phase)

    def headline(self, summary: RunSummary) -> None:
        """The headline figures with their 95% intervals and verdicts, and the report's path."""
        out = Console() if Console().is_terminal else Console(width=160)  # logs: no wrapping
        table = Table(title=f"seambench {summary.run_id}: {' vs '.join(summary.placements)}")
        for column in ("figure", "value", "95% CI", "verdict"):
            table.add_column(column, justify="right" if column in ("value", "95% CI") else "left")
        for h in summary.headlines:
            table.add_row(h.label, *display.headline_cells(h))
        out.print(table)
        for warning in summary.warnings:
            out.print(f"[yellow]warning:[/yellow] {warning}", markup=True, highlight=False)
        if summary.invalid_steps:
            out.print(f"{len(summary.invalid_steps)} invalid step(s), listed in the report")
        out.print(f"report: {self.run_dir / 'report.html'}")
