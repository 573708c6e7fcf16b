"""The ``seambench`` command."""
from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import click

from bench.launcher import LaunchError, LaunchSettings, launch
from shop.placement import Topology, TopologyError, load_topology
from shop.search.service import SearchSettings


def _topology(ctx: click.Context, param: click.Parameter, value: str) -> Topology:
    try:
        return load_topology(value)
    except TopologyError as exc:
        raise click.BadParameter(str(exc)) from None


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP all stop what we started. SIGINT is set explicitly because
    a shell starts background jobs with it ignored, and Python then installs no handler."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


def _settings(workers: int, threads: int, catalog_size: int, kdf_log2: int) -> LaunchSettings:
    return replace(LaunchSettings(), workers=workers, threads=threads, scrypt_n=2**kdf_log2,
                   search=replace(SearchSettings(), catalog_size=catalog_size))


common_options = [
    click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="gunicorn worker processes per process"),
    click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
                 help="gthread threads per worker"),
    click.option("--catalog-size", type=click.IntRange(10, 1_000_000), default=10_000,
                 show_default=True, help="products in the seeded catalog"),
    click.option("--kdf-log2", type=click.IntRange(1, 20), default=14, show_default=True,
                 help="scrypt cost: N = 2**this"),
]


def with_common_options(fn):
    for option in reversed(common_options):
        fn = option(fn)
    return fn


@click.group()
def cli() -> None:
    """seambench: what does a seam cost? One shop, measured as a monolith and as microservices."""


def main() -> None:
    """Console entry point: a bad argument is one line on stderr and exit code 2."""
    try:
        cli.main(prog_name="seambench", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"seambench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)


@cli.command()
@click.option("--topology", "topology", default="monolith", show_default=True, callback=_topology,
              help="monolith, microservices, hybrid, or a path to a topology .toml")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep databases and logs here (default: a temporary directory, removed)")
@with_common_options
def up(topology: Topology, data_dir: Path | None, workers: int, threads: int,
       catalog_size: int, kdf_log2: int) -> None:
    """Start a topology, print its public base URL, and stop it all on Ctrl-C or SIGTERM."""
    _stop_on_signals()
    settings = _settings(workers, threads, catalog_size, kdf_log2)
    try:
        with launch(topology, settings, data_dir) as shop:
            click.echo(shop.base_url)
            click.echo(f"{topology.name}: {len(shop.processes)} process(es) up; Ctrl-C stops them",
                       err=True)
            while not shop.dead():
                time.sleep(0.2)
            for proc in shop.dead():
                click.echo(f"process {proc.name!r} exited with code {proc.popen.returncode}; "
                           f"last lines of its log:\n{proc.log_tail()}", err=True)
            sys.exit(1)
    except LaunchError as exc:
        click.echo(f"seambench up: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@cli.command()
@click.option("--topology", "topologies", multiple=True, default=["monolith", "microservices"],
              show_default=True, help="placements to measure (repeatable)")
@click.option("--checkouts", type=click.IntRange(10, 100_000), default=300, show_default=True)
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True)
@with_common_options
def run(topologies: tuple[str, ...], checkouts: int, results: Path, workers: int, threads: int,
        catalog_size: int, kdf_log2: int) -> None:
    """Measure each placement: for now, the sequential checkout probe (one client, unloaded)."""
    from bench.probe import probe_checkout

    _stop_on_signals()
    try:
        placements = [load_topology(t) for t in topologies]
    except TopologyError as exc:
        raise click.BadParameter(str(exc), param_hint="--topology") from None
    settings = _settings(workers, threads, catalog_size, kdf_log2)
    run_dir = results / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for topology in placements:
        click.echo(f"{topology.name}: starting", err=True)
        try:
            with launch(topology, settings) as shop:
                result = probe_checkout(shop.base_url, topology.name, checkouts)
        except LaunchError as exc:
            click.echo(f"seambench run: {exc}", err=True)
            sys.exit(1)
        summaries.append(result.summary())
        click.echo(f"{topology.name}: p50 {result.percentile(50):.0f} µs", err=True)
    (run_dir / "probe.json").write_text(json.dumps(summaries, indent=2) + "\n")
    click.echo(f"{'placement':<16}{'checkouts':>10}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}")
    for s in summaries:
        click.echo(f"{s['placement']:<16}{s['checkouts']:>10}{s['p50_us']:>10}{s['p90_us']:>10}"
                   f"{s['p99_us']:>10}")
    click.echo(f"results: {run_dir / 'probe.json'}")
