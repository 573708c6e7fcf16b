"""The baseline ref's checkout: a commit put into a temporary worktree and removed after,
refused with a one-line reason when it cannot be run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.system.gitref import (RefError, base_name, checked_out, dependencies, environment_for,
                                 resolve)

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding a shop-shaped tree (this checkout's pyproject.toml, so the
    ref shares our interpreter) in two commits: the second adds a marker file."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "--quiet")
    git(path, "config", "user.email", "t@example.invalid")
    git(path, "config", "user.name", "t")
    for package in ("shop", "monolith", "microservices"):
        (path / package).mkdir()
        (path / package / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", path / "pyproject.toml")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "first")
    (path / "shop" / "marker.py").write_text("VERSION = 2\n")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "second: a marker")
    return path


def test_a_ref_is_checked_out_at_its_commit_and_removed_after(repo: Path) -> None:
    with checked_out("HEAD~1", repo=repo, cache=repo / "cache") as source:
        root = Path(source.root)
        assert (root / "shop" / "__init__.py").is_file()
        assert not (root / "shop" / "marker.py").exists()  # HEAD~1: before the marker
        assert source.commit == git(repo, "rev-parse", "HEAD~1")
        assert source.subject == "first"
        assert source.python == sys.executable  # the same dependencies as ours
        assert str(root) in git(repo, "worktree", "list")
    assert not root.exists()
    assert str(root) not in git(repo, "worktree", "list")


def test_the_worktree_is_removed_when_the_run_fails(repo: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with checked_out("HEAD", repo=repo, cache=repo / "cache") as source:
            assert (Path(source.root) / "shop" / "marker.py").is_file()
            raise KeyboardInterrupt
    assert not Path(source.root).exists()
    assert git(repo, "worktree", "list").count("\n") == 0  # only the main worktree


@pytest.mark.parametrize("ref", ["no-such-branch", "HEAD~5", "-x", ""])
def test_a_ref_that_names_no_commit_is_refused_in_one_line(repo: Path, ref: str) -> None:
    with pytest.raises(RefError) as err:
        resolve(repo, ref)
    assert "\n" not in str(err.value)


def test_a_tree_without_the_shop_is_refused_and_cleaned_up(repo: Path) -> None:
    git(repo, "rm", "-r", "--quiet", "monolith")
    git(repo, "commit", "--quiet", "-m", "no monolith")
    with pytest.raises(RefError, match="no monolith/ package"):
        with checked_out("HEAD", repo=repo, cache=repo / "cache"):
            pass
    assert git(repo, "worktree", "list").count("\n") == 0


def test_other_dependencies_get_their_own_environment_built_once(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """A ref declaring other dependencies is not run on ours: a venv keyed by its list
    (here an empty list, so nothing is downloaded), reused the second time."""
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    assert dependencies(ref) == []
    said: list[str] = []
    python, how = environment_for(ref, ROOT, tmp_path / "cache", said.append)
    assert python != sys.executable and Path(python).exists() and "its own" in how
    assert len(said) == 1
    again, _ = environment_for(ref, ROOT, tmp_path / "cache", said.append)
    assert again == python and len(said) == 1  # built once


def test_ours_are_read_from_pyproject() -> None:
    assert any(d.startswith("flask") for d in dependencies(ROOT))
    assert base_name("microservices") == "microservices@base"
