# Sourced by setup-and-run and setup-and-test: make .venv with seambench installed, once.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.seambench-installed"

pick_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "seambench: error: Python 3.11 or newer is required (none found on PATH)" >&2
    return 1
}

want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
    python="$(pick_python)"
    echo "seambench: creating $venv with $("$python" --version)" >&2
    "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "seambench: installing dependencies into $venv (first run only)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,postgres,rabbitmq]" >&2
    echo "$want" > "$stamp"
fi
