"""What a result was measured on: enough to tell two runs' conditions apart."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("flask", "gunicorn", "werkzeug", "click", "psutil", "locust", "gevent", "geventhttpclient",
            "hdrhistogram", "numpy", "pandas", "matplotlib", "rich")


def git_revision(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fingerprint() -> dict[str, object]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_revision": git_revision(Path(__file__).resolve().parents[2]),  # the checkout
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "kernel": platform.release(), "python": sys.version.split()[0],
            "packages": versions, "nginx": _nginx()}


def _nginx() -> str | None:
    """The version of the nginx an edge would run, None without one."""
    from bench.system.edge import EdgeError, find_nginx, nginx_version
    binary = find_nginx()
    try:
        return nginx_version(binary) if binary else None
    except EdgeError:
        return None
