"""The documents stand alone and stay readable: the README fits in 200 lines, every link
between them resolves inside the repository, every page says first what a reader gets from
it, and every run docs/results.md quotes has its summary.json committed beside it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
RUN_ID = re.compile(r"\b(20\d{6}-\d{6}-\d{4})\b")


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves_inside_the_repository(page: Path):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), (page.name, target)
        assert resolved.exists(), (page.name, target)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_cites_a_file_outside_the_repository(page: Path):
    text = page.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text, page.name


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_page_starts_with_what_a_reader_gets(page: Path):
    paragraphs = [p.strip() for p in page.read_text().split("\n\n") if p.strip()]
    assert paragraphs[0].startswith("# "), page.name
    assert paragraphs[1].startswith("What you get"), (page.name, paragraphs[1][:60])


def test_every_run_the_results_quote_is_committed():
    text = (ROOT / "docs" / "results.md").read_text()
    quoted = set(RUN_ID.findall(text))
    assert quoted, "docs/results.md quotes its runs by id"
    missing = [run for run in sorted(quoted)
               if not (ROOT / "docs" / "results" / run / "summary.json").is_file()]
    assert not missing, f"no docs/results/<run>/summary.json for {missing}"


def test_the_readmes_own_split_is_a_topology_the_shop_accepts(tmp_path: Path):
    from shop.topology import load_topology
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Price your own split"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert len(block.strip().splitlines()) == 5  # "five lines of TOML", as the README says
    path = tmp_path / "auth-apart.toml"
    path.write_text(block)
    topology = load_topology(path)
    assert topology.processes == {"auth": ("auth",), "core": ("billing", "search", "notify")}
    assert {topology.databases[c] for c in ("billing", "search", "notify")} == {"core"}
