"""Another version of the shop, from git, to run beside this checkout's (``run --baseline-ref``).

``checked_out(ref)`` puts the commit ``ref`` names into a temporary git worktree and yields
a ``ShopSource``: where its code is and which Python runs it. Its placements are started
from that worktree (``bench.system.launcher``), so the shop under test there is the ref's
code, while the harness (load, floors, fault proxies, analysis) stays this checkout's. The
worktree is removed on exit, whatever ends the block.

The ref's shop runs in an environment with its own dependency list: when its pyproject.toml
declares the same dependencies as this checkout's, this checkout's interpreter serves it
(its packages shadow ours: the worktree is the processes' working directory and first on
their path); otherwise a virtual environment with exactly the ref's dependencies is built
once and kept under the cache directory, keyed by that list.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BASE_MARK = "@base"  # "microservices@base": the placement microservices, run from the ref
CACHE_ENV = "SEAMBENCH_CACHE"  # where built environments are kept (default ~/.cache/seambench)
GIT_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 900


class RefError(RuntimeError):
    """A ref that cannot be run: the message (one line first) says why."""


@dataclass(frozen=True)
class ShopSource:
    """The shop's code at a git ref, ready to start: ``root`` holds its packages (shop,
    monolith, microservices) and ``python`` has its dependencies."""

    ref: str  # as the user named it: "HEAD~1", a tag, a branch
    commit: str  # the full hash it named when the run began
    subject: str  # the commit's first line
    root: str
    python: str
    environment: str  # how its dependencies are served, for the report

    def describe(self) -> str:
        """'HEAD~1 = 1a2b3c4d5e6f "subject" (dependencies: ...)'."""
        return (f"{self.ref} = {self.commit[:12]} \"{self.subject}\" "
                f"(dependencies: {self.environment})")


def base_name(placement: str) -> str:
    """The name of ``placement`` run from the baseline ref."""
    return placement + BASE_MARK


def repository_root() -> Path:
    """This checkout's git top level; RefError when it is not a git checkout."""
    here = Path(__file__).resolve().parents[2]
    out = _git(here, "rev-parse", "--show-toplevel")
    return Path(out)


def resolve(repo: Path, ref: str) -> tuple[str, str]:
    """(full commit hash, subject) of ``ref`` in ``repo``; RefError when it names no commit."""
    if not ref or ref.startswith("-"):
        raise RefError(f"{ref!r} is not a git ref")
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RefError:
        raise RefError(f"{ref!r} names no commit in {repo} (a shallow clone lacks the "
                       f"parents: fetch with more history)") from None
    return commit, _git(repo, "log", "-1", "--format=%s", commit)


@contextmanager
def checked_out(ref: str, repo: Path | None = None, cache: Path | None = None,
                say=lambda text: None) -> Iterator[ShopSource]:
    """The shop at ``ref`` in a temporary worktree, with an environment for it; the
    worktree is removed afterwards. ``say`` reports slow steps (building an environment).
    Raises RefError for a ref that names no commit or a tree without the shop in it."""
    repo = repo or repository_root()
    commit, subject = resolve(repo, ref)
    parent = Path(tempfile.mkdtemp(prefix="seambench-ref-"))
    root = parent / commit[:12]
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(root), commit)
        for package in ("shop", "monolith", "microservices"):
            if not (root / package / "__init__.py").is_file():
                raise RefError(f"{ref} ({commit[:12]}) has no {package}/ package: not a "
                               f"version of this shop")
        python, environment = environment_for(root, Path(__file__).resolve().parents[2],
                                              cache or cache_dir(), say)
        yield ShopSource(ref, commit, subject, str(root), python, environment)
    finally:
        try:
            _git(repo, "worktree", "remove", "--force", str(root))
        except RefError:  # never added, or already gone: forget it either way
            shutil.rmtree(root, ignore_errors=True)
            try:
                _git(repo, "worktree", "prune")
            except RefError:
                pass
        shutil.rmtree(parent, ignore_errors=True)


def dependencies(project_root: Path) -> list[str]:
    """The runtime dependencies a pyproject.toml declares, sorted; [] without one."""
    try:
        doc = tomllib.loads((project_root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return sorted(str(d) for d in doc.get("project", {}).get("dependencies", []))


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seambench"


def environment_for(root: Path, ours: Path, cache: Path, say=lambda text: None) -> tuple[str, str]:
    """(python, description) for the shop at ``root``: this interpreter when it declares
    our dependencies, else a virtual environment built once with exactly its own."""
    wanted = dependencies(root)
    if wanted == dependencies(ours):
        return sys.executable, "the same as this checkout's"
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
    env = cache / "envs" / key
    python = env / "bin" / "python"
    stamp = env / ".installed"
    if not stamp.is_file():
        say(f"building an environment for the ref's dependencies in {env} (once)")
        shutil.rmtree(env, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(env)], INSTALL_TIMEOUT_S)
        if wanted:
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  *wanted], INSTALL_TIMEOUT_S)
        stamp.write_text("\n".join(wanted) + "\n")
    return str(python), f"its own, {env}"


def _run(cmd: list[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RefError(f"{' '.join(cmd[:4])} ...: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RefError(f"{' '.join(cmd[:4])} ... failed (exit {done.returncode}): {tail}")


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RefError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise RefError(f"git {args[0]} in {repo}: {message}")
    return done.stdout.strip()
