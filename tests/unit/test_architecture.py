"""The boundaries DESIGN.md draws, checked: logic knows no HTTP, imports do no work."""
from __future__ import annotations

import ast
import subprocess
import sys
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
