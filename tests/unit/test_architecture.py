"""The boundaries docs/architecture.md draws, checked: logic knows no HTTP, Locust is
imported only where load is generated, imports do no work, and the harness core names no
experiment."""
from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGIC = [*ROOT.glob("shop/*/api.py"), *ROOT.glob("shop/*/service.py"),
         *ROOT.glob("shop/*/catalog.py"), ROOT / "shop/events.py", ROOT / "shop/storage/__init__.py",
         ROOT / "shop/storage/sqlite.py", ROOT / "shop/errors.py"]
# shop/storage/postgres.py and shop/broker.py are adapters to servers: network by nature.
WEB_AND_NETWORK = {"flask", "werkzeug", "http", "socket", "requests", "urllib3", "urllib",
                   "gunicorn", "shop.web", "shop.hops", "locust"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_logic_imports_neither_flask_nor_the_network():
    assert len(LOGIC) >= 13
    for path in LOGIC:
        bad = {m for m in imported_modules(path)
               if m in WEB_AND_NETWORK or m.split(".")[0] in WEB_AND_NETWORK - {"shop"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_locust_is_imported_nowhere_in_the_shop():
    for path in [*ROOT.glob("shop/**/*.py"), *ROOT.glob("monolith/*.py"),
                 *ROOT.glob("microservices/*.py")]:
        assert not any(m.split(".")[0] == "locust" for m in imported_modules(path)), path


def test_importing_every_module_starts_nothing_and_writes_nothing(tmp_path):
    modules = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts)
                      for top in ("shop", "monolith", "microservices", "bench")
                      for p in (ROOT / top).rglob("*.py")} - {"bench.__init__"})
    script = (
        "import threading, importlib, os\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name.removesuffix('.__init__'))\n"
        "print(threading.active_count(), len(os.listdir('.')))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]  # one thread, no file created



CORE = [p for p in ROOT.glob("bench/**/*.py") if p.relative_to(ROOT).parts[1] != "experiments"]
# "hops" is also the shop's word for a call between processes: only as a string is it the
# experiment's name; the others are names wherever they appear, docstrings and comments too.
EXPERIMENT_WORDS = {"journey", "fanout", "fan-out", "chaos", "hopchain"}
EXPERIMENT_STRINGS = {"hops", "chain"}


def names_of_experiments_in(path: Path) -> set[str]:
    found = set()
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT):
            found |= set(re.findall(r"[a-z][a-z-]*", token.string.lower())) & EXPERIMENT_WORDS
        if token.type == tokenize.STRING and token.string.strip("\"'") in EXPERIMENT_STRINGS:
            found.add(token.string)
    return found


def test_the_harness_core_names_no_experiment():
    assert len(CORE) >= 30 and ROOT / "bench/run.py" in CORE
    for path in CORE:
        named = names_of_experiments_in(path)
        assert not named, f"{path.relative_to(ROOT)} names {sorted(named)}"


def test_locust_is_imported_only_where_load_is_generated():
    """Locust and gevent (which monkey-patches the process) live in the generator's room and
    the experiments' scenario files, and the harness process never loads them."""
    allowed = {*ROOT.glob("bench/load/*.py"), *ROOT.glob("bench/experiments/*/scenario.py")}
    for path in [*ROOT.glob("bench/**/*.py"), *ROOT.glob("shop/**/*.py")]:
        if any(m.split(".")[0] in ("locust", "gevent") for m in imported_modules(path)):
            assert path in allowed, path
    script = ("import sys, bench.run, bench.cli, bench.load.generator\n"
              "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
