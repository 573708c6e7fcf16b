"""A report as a list of blocks, rendered to Markdown or to one self-contained HTML page.

The report is built once as blocks (headings, paragraphs, bullet lists, tables, figures) and
rendered twice, so report.md and report.html say the same thing. All text is plain: the
Markdown renderer escapes what Markdown would interpret, the HTML renderer escapes
everything, and figures are embedded in the HTML as base64 data URIs (no external
resource of any kind, so the page can be mailed or attached to a CI job as one file).
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1..4


@dataclass(frozen=True)
class Paragraph:
    text: str
    strong: bool = False


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    """``align``: one letter per column, "l" or "r" (default: the first left, the rest right)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str = ""

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


@dataclass(frozen=True)
class Figure:
    """A PNG, ``path`` relative to the report's directory."""

    path: str
    caption: str


Block = Union[Heading, Paragraph, Bullets, Table, Figure]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])|<(?=[A-Za-z/!?])")


def md_escape(text: str) -> str:
    """``text`` as literal Markdown text on one line (specials backslash-escaped)."""
    text = " ".join(str(text).split())
    return _MD_SPECIAL.sub(lambda m: "\\" + (m.group(1) or "<"), text)


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; figures are linked by their relative paths."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_escape(block.text)}")
        elif isinstance(block, Paragraph):
            text = md_escape(block.text)
            out.append(f"**{text}**" if block.strong else text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {md_escape(item)}" for item in block.items))
        elif isinstance(block, Table):
            align = block.alignment()
            lines = ["| " + " | ".join(md_escape(c) for c in block.columns) + " |",
                     "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
            lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            out.append(f"![{md_escape(block.caption)}]({block.path})")
        else:
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; } h3 { font-size: 1.1rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; vertical-align: top; }
th { background: #f2f2f2; } td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
p.strong { font-weight: bold; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
"""


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str, base_dir: str | Path) -> str:
    """One HTML page with inline CSS; each figure's PNG (read from ``base_dir``/path) is
    embedded as a data URI, and a figure whose file is missing is left out."""
    base_dir = Path(base_dir)
    esc = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            cls = ' class="strong"' if block.strong else ""
            body.append(f"<p{cls}>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            align = block.alignment()
            head = "".join(f'<th class="{a}">{esc(c)}</th>' for c, a in zip(block.columns, align))
            rows = "".join("<tr>" + "".join(f'<td class="{a}">{esc(c)}</td>' for c, a in zip(row, align))
                           + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            png = base_dir / block.path
            if png.is_file():
                body.append(f'<figure><img src="{_data_uri(png)}" alt="{esc(block.caption)}">'
                            f"<figcaption>{esc(block.caption)}</figcaption></figure>")
        else:
            raise TypeError(f"not a report block: {block!r}")
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
