"""How a distributed run is laid out and launched: Locust's own master/worker mode.

One ``locust --master --headless --expect-workers N`` and N ``locust --worker`` processes, of
which the harness starts the local ones; the others join from other machines with
``seambench generator --master-host HOST`` (``run_worker``), which fetches the master's
locustfile (Locust's ``-f -``), so every worker runs the master's scenario. What they do
once connected (the plan dealt by worker index, one start for all, results sent to the
master) is ``bench.load.coordination``; ``bench.load.generator.run_load`` starts them.
Locust is not imported here: these are command lines.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MASTER_PORT = 5557  # Locust's default, where a worker looks when told only the host
MASTER_PORT_FILE = "master-port"  # written by the master into the plan's output directory
SCENARIO_FROM_MASTER = "-"  # Locust's locustfile "-": a worker fetches its master's
# How long remote workers may take to connect: someone starts them by hand.
REMOTE_CONNECT_WAIT_S = 600.0
LOCAL_CONNECT_WAIT_S = 60.0


@dataclass(frozen=True)
class Distributed:
    """``workers`` Locust workers share one schedule, each sending its slice of it.

    ``remote`` of them join from other machines (``seambench generator``), the rest are
    started here. The master listens on ``bind_host``:``port`` (port 0: any free one, which
    only local workers can find, so remote workers need a port given)."""

    workers: int
    remote: int = 0
    bind_host: str = "127.0.0.1"
    port: int = 0
    connect_wait_s: float | None = None  # default: by whether some are remote

    def __post_init__(self) -> None:
        if self.workers < 1 or not 0 <= self.remote <= self.workers:
            raise ValueError(f"{self.remote} remote of {self.workers} generators: at least "
                             f"one generator, and no more remote ones than generators")
        if self.remote and not self.port:
            raise ValueError("remote workers need the master on a known port, not 0")

    @property
    def local(self) -> int:
        return self.workers - self.remote

    @property
    def connect_timeout_s(self) -> float:
        """How long the master waits for every worker to connect before giving up."""
        if self.connect_wait_s is not None:
            return self.connect_wait_s
        return REMOTE_CONNECT_WAIT_S if self.remote else LOCAL_CONNECT_WAIT_S


def worker_name(identity: dict[str, Any]) -> str:
    """"generator worker 1 (host, pid 4242)": how a reason names a worker of a distributed
    run (``identity`` as the worker gave it; host and pid unknown if it was lost early)."""
    where = ", ".join(filter(None, [identity.get("host"),
                                    f"pid {identity['pid']}" if identity.get("pid") else ""]))
    return f"generator worker {identity['index']}" + (f" ({where})" if where else "")


def master_command(locustfile: Path, host: str, layout: Distributed,
                   common: list[str]) -> list[str]:
    """The master's command line; ``common`` are the options every generator process takes
    (host, run time, logging). It sends no request itself: it hands one user to each worker."""
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--master", "--headless",
            "--master-bind-host", layout.bind_host, "--master-bind-port", str(layout.port),
            "--expect-workers", str(layout.workers),
            "--expect-workers-max-wait", str(max(1, round(layout.connect_timeout_s))),
            "--users", str(layout.workers), "--spawn-rate", str(layout.workers),
            "--host", host, *common]


def worker_command(master_host: str, master_port: int,
                   locustfile: str = SCENARIO_FROM_MASTER) -> list[str]:
    """A worker's command line: everything else (the scenario's options, the plan, the host)
    comes from the master."""
    return [sys.executable, "-m", "locust", "--worker", "-f", locustfile,
            "--master-host", master_host, "--master-port", str(master_port),
            "--loglevel", "WARNING", "--exit-code-on-error", "0"]


def master_port(output_dir: Path, master: subprocess.Popen, timeout_s: float) -> int | None:
    """The port the master listens on, once it has written it (``MASTER_PORT_FILE``); None
    if the master exited first or ``timeout_s`` passed."""
    path = output_dir / MASTER_PORT_FILE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and master.poll() is None:
        if path.exists():
            return int(path.read_text())
        time.sleep(0.05)
    return None


def run_worker(master_host: str, master_port: int, env: dict[str, str],
               niceness: int = 0) -> int:
    """Run one worker here until its master ends the run; its exit status. Locust writes the
    fetched locustfile into the temporary directory, so each worker gets one of its own
    (two workers on one machine would otherwise write the same file as the other reads it)."""
    with tempfile.TemporaryDirectory(prefix="seambench-generator-") as scratch:
        def renice() -> None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
            except PermissionError:
                pass
        return subprocess.call(worker_command(master_host, master_port),
                               env={**env, "TMPDIR": scratch}, preexec_fn=renice)
