"""SIGINT or SIGTERM to `run`, `chaos`, `up` or `load`, at any moment, leaves no process.

Each command runs in a session of its own (so the signal reaches the harness alone, as a
``kill PID`` would, not every child as a terminal's Ctrl-C does) while tests/proctable.py
reads its process tree every 50 ms; at the chosen moment the harness gets the signal, and
when it has exited, no process it started may still run (orphans included: they are
looked for by pid and start time, not in the tree they have left).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.truth_server import running
from tests.proctable import ProcessWatch

SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
SMALL = ["--kdf-log2", "4"]
WAIT_FOR_POINT_S = 120
EXIT_WITHIN_S = 60


@pytest.fixture(scope="module")
def target() -> str:
    """A loopback server for `load` to drive (tests/bench/truth_server.py, never slow)."""
    with running(slow_every=10**9, slow_ms=0) as (_, url):
        yield url + "/"


def starting(watch: ProcessWatch, output: Path) -> bool:
    """The shop's servers are being started (not yet all ready)."""
    return watch.running("gunicorn")


def loading(watch: ProcessWatch, output: Path) -> bool:
    """A step is under way: a Locust generator runs."""
    return watch.running("locust")


def after_a_step(watch: ProcessWatch, output: Path) -> bool:
    """A generator has run and none runs now: the step is being checked (chaos: the
    oracle settles and reads every account) or the next set up."""
    ran = any("locust" in cmdline for cmdline in watch.seen.values())
    return ran and not watch.running("locust")


def serving(watch: ProcessWatch, output: Path) -> bool:
    """`up` has printed its public URL."""
    return "http://127.0.0.1:" in output.read_text()


def at_once(watch: ProcessWatch, output: Path) -> bool:
    return True


RUN = ["run", "--profile", "smoke", "--topology", "monolith", "--topology", "microservices",
       "--experiment", "journey", "--set", "journey.duration_s=20", *SMALL]
CHAOS = ["chaos", "--profile", "smoke", "--topology", "monolith", *SMALL]
UP = ["up", "--topology", "microservices", *SMALL]
CASES = [
    ("run", RUN, starting, signal.SIGTERM),
    ("run", RUN, loading, signal.SIGINT),
    ("run", RUN, after_a_step, signal.SIGTERM),
    ("chaos", CHAOS, starting, signal.SIGINT),
    ("chaos", CHAOS, loading, signal.SIGTERM),
    ("chaos", CHAOS, after_a_step, signal.SIGINT),
    ("up", UP, starting, signal.SIGINT),
    ("up", UP, serving, signal.SIGTERM),
    ("load", None, at_once, signal.SIGINT),
    ("load", None, loading, signal.SIGTERM),
]


@pytest.mark.parametrize("command,args,point,sig", CASES,
                         ids=[f"{c}-{p.__name__}-{s.name}" for c, _, p, s in CASES])
def test_an_interrupt_leaves_no_process(tmp_path, target, command, args, point, sig):
    if args is None:  # load: a long open-loop run on a local server
        args = ["load", target, "--rate", "50", "--duration", "60"]
    elif command in ("run", "chaos"):
        args = [*args, "--results", str(tmp_path / "results")]
    output = tmp_path / "output.txt"
    with open(output, "w") as out:
        proc = subprocess.Popen([*SEAMBENCH, *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        with ProcessWatch(proc.pid) as watch:
            deadline = time.monotonic() + WAIT_FOR_POINT_S
            while not point(watch, output):
                assert proc.poll() is None, f"{command} ended first:\n{output.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"{point.__name__} never came"
                time.sleep(0.02)
            watch.read()
            proc.send_signal(sig)
            proc.wait(EXIT_WITHIN_S)
        left = watch.survivors()
        settle = time.monotonic() + 3  # a killed gunicorn master's workers notice within 1 s
        while left and time.monotonic() < settle:
            time.sleep(0.1)
            left = watch.survivors()
        assert not left, f"{command} left running after {sig.name} ({point.__name__}):\n" \
                         + "\n".join(left) + f"\n--- output:\n{output.read_text()[-2000:]}"
        if point is not at_once:
            assert watch.seen, "nothing was started: the point was not reached"
            assert proc.returncode == 130, f"{command}: exit {proc.returncode}, not 130"
    finally:
        if proc.poll() is None:
            proc.kill()
