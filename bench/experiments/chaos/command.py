"""``seambench chaos``: the chaos experiment's own command, added to ``seambench`` through the
``seambench.commands`` entry-point group (a run of this one experiment, with its options)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bench.cli import (launch_settings, measure, stop_on_signals, topology_callback,
                       with_common_options)
from bench.run import PROFILES
from shop.placement import Topology

NAME = "chaos"


@click.command(NAME)
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="quick",
              show_default=True, help="quick (five crashes of billing, five of notify: ~4 min), "
              "full (every fault kind against every dependency: ~50 min), smoke (for tests)")
@click.option("--topology", "placements", multiple=True, default=["monolith", "microservices"],
              show_default=True, callback=topology_callback, help="placements to fault (repeatable)")
@click.option("--plan", "plans", multiple=True, metavar="NAME|FILE.toml",
              help="a built-in fault plan (e.g. crash-billing, pause-notify) or a plan file "
                   "(repeatable; default: the profile's)")
@click.option("--set", "assignments", multiple=True, metavar=f"{NAME}.FIELD=VALUE",
              help=f"override a setting, e.g. {NAME}.rate=40 (repeatable)")
@click.option("--trials", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**31), default=1, show_default=True)
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True, help="runs are written under this")
@with_common_options
def chaos(profile: str, placements: list[Topology], plans: tuple[str, ...],
          assignments: tuple[str, ...], trials: int, seed: int, results: Path, workers: int,
          threads: int, catalog_size: int, kdf_log2: int, hop_delay_ms: float, edge: str) -> None:
    """Inject faults under load into each placement, supervised, and run the consistency
    oracle after every step: availability, p99 during and after, recovery, breaker
    transitions, notification lag, and whether any money or notification was lost or
    duplicated. Writes results/<run-id>/ with its report and a timeline per plan. Exit codes
    as ``run``'s: 1 when the oracle found anything lost, created, duplicated or unresolved
    (the problems are the first warnings of the summary)."""
    from bench.system.faults import PlanError, load_plan
    stop_on_signals()
    for plan in plans:
        try:
            load_plan(plan)
        except PlanError as exc:
            raise click.BadParameter(str(exc), param_hint="--plan") from None
    overrides: dict[str, dict[str, Any]] = {NAME: {"plans": tuple(plans)}} if plans else {}
    measure(NAME, profile, placements, (), (NAME,), assignments, overrides, trials, seed,
            "poisson", results, launch_settings(workers, threads, catalog_size, kdf_log2,
                                                hop_delay_ms, edge))
