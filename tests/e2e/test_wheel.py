"""seambench as a user installs it: the wheel, in a fresh virtual environment outside the
checkout, with its data (the built-in topologies) read as package data, and a smoke run
from a folder that is not the checkout."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path):
    wheels, elsewhere = tmp_path / "wheels", tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = tmp_path / "source"  # a build writes build/ and *.egg-info beside the sources
    top = {".git", ".venv", "results", "build", ".pytest_cache"}
    shutil.copytree(ROOT, source, ignore=lambda d, names: [
        n for n in names if (Path(d) == ROOT and n in top) or n == "__pycache__"
        or n.endswith(".egg-info")])
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, source,
       cwd=tmp_path)
    (wheel,) = wheels.glob("seambench-*.whl")
    venv = tmp_path / "v"
    sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    sh(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
       wheel, cwd=tmp_path)

    # the installed copy, not the checkout: the packages and their topologies are its own
    where = sh(venv / "bin" / "python", "-c",
               "import shop, shop.topology as t; print(shop.__file__); "
               "print(sorted(t.built_in_topologies()))", cwd=elsewhere).stdout.splitlines()
    assert ROOT not in Path(where[0]).parents and "site-packages" in where[0]
    assert "'monolith'" in where[1] and "'microservices'" in where[1]

    # the optional clients are optional: a -pg topology names the extra it needs
    refused = subprocess.run([venv / "bin" / "seambench", "up", "--topology", "monolith-pg"],
                             cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "pip install 'seambench[postgres]'" in refused.stderr

    done = sh(venv / "bin" / "seambench", "run", "--profile", "smoke", "--kdf-log2", "4",
              "--catalog-size", "2000", cwd=elsewhere, timeout=900)
    (run_dir,) = (elsewhere / "results").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and {"monolith", "microservices"} <= set(summary["placements"])
    assert str(run_dir.name) in done.stdout + done.stderr
