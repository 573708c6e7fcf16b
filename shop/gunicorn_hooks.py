"""gunicorn server hooks of every server the launcher starts (``--config python:shop.gunicorn_hooks``).

Only hooks live here; every setting stays on the command line (``launcher.gunicorn_command``).
"""
from __future__ import annotations

import os

from prometheus_client import multiprocess

from shop.serverusage import SERVER_PID_ENV
from shop.telemetry import MULTIPROC_ENV


def on_starting(server) -> None:
    """In the master, before any worker is forked: its pid, which the workers inherit, so
    that /metrics reports the whole server's CPU and memory (shop/serverusage.py)."""
    os.environ[SERVER_PID_ENV] = str(os.getpid())


def child_exit(server, worker) -> None:
    """In the master, when a worker has exited: prometheus_client's bookkeeping for a dead
    process (it drops the worker's live-gauge files; its counters and histograms stay, as
    they are part of the process's counts). Servers without metrics files (the floors) skip it."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)
