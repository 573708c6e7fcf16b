"""Where each key of a TOML document is written: key path -> line number.

``tomllib`` reports the line of a *syntax* error but forgets positions once a document is
parsed, so a schema error ("p99_ms must be a number") could not say where it is. This is a
small line scanner, not a parser: it follows table headers (``[a.b]``, ``[[a]]``, counting
the elements of arrays of tables) and ``key = value`` lines (bare, quoted and dotted keys),
skipping the insides of multi-line strings and arrays. It only ever runs on a document
``tomllib`` already accepted, so it need not diagnose anything.

Paths index arrays of tables from 0: the key ``p99_ms`` of the table ``[budget.ceiling]``
under the third ``[[budget]]`` is ``("budget", 2, "ceiling", "p99_ms")``.
"""
from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, start: int) -> tuple[list[str], int] | None:
    """A (dotted) key at ``text[start:]``: its parts and the index after it, or None."""
    parts: list[str] = []
    i = start
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            return None
        if text[i] in "\"'":
            quote = text[i]
            end = i + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            raw = text[i + 1:end]
            parts.append(raw.encode().decode("unicode_escape") if quote == '"' else raw)
            i = end + 1
        else:
            match = _BARE.match(text, i)
            if not match:
                return None
            parts.append(match.group())
            i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


def _open_brackets(value: str) -> int:
    """How many ``[`` / ``{`` a value leaves open at the end of its line (strings skipped)."""
    depth, i = 0, 0
    while i < len(value):
        c = value[i]
        if c == "#":
            break
        if c in "\"'":
            end = value.find(c, i + 1)
            while c == '"' and end > 0 and value[end - 1] == "\\":
                end = value.find(c, end + 1)
            i = len(value) if end < 0 else end + 1
            continue
        depth += (c in "[{") - (c in "]}")
        i += 1
    return depth


def key_lines(text: str) -> dict[Path, int]:
    """Every table header's and key's path -> its 1-based line."""
    lines: dict[Path, int] = {}
    counts: dict[Path, int] = {}  # array-of-tables path (resolved) -> elements so far
    arrays: set[tuple[str, ...]] = set()  # unresolved paths declared with [[...]]
    current: Path = ()
    skip_until: str | None = None  # closing delimiter of a multi-line string
    depth = 0  # open brackets of a multi-line array or inline table
    for number, line in enumerate(text.splitlines(), start=1):
        if skip_until is not None:
            if skip_until in line:
                skip_until = None
            continue
        if depth > 0:
            depth += _open_brackets(line)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            double = stripped.startswith("[[")
            parsed = _parse_key(stripped, 2 if double else 1)
            if parsed is None:
                continue
            resolved: list[str | int] = []
            for k in range(len(parsed[0])):
                prefix = tuple(parsed[0][:k + 1])
                resolved.append(prefix[-1])
                last = k == len(parsed[0]) - 1
                if double and last:
                    arrays.add(prefix)
                    counts[tuple(resolved)] = counts.get(tuple(resolved), -1) + 1
                    resolved.append(counts[tuple(resolved)])
                elif prefix in arrays:
                    resolved.append(counts.get(tuple(resolved), 0))
            current = tuple(resolved)
            lines.setdefault(current, number)
            continue
        parsed = _parse_key(line, 0)
        if parsed is None or parsed[1] >= len(line) or line[parsed[1]] != "=":
            continue
        lines.setdefault(current + tuple(parsed[0]), number)
        value = line[parsed[1] + 1:].lstrip()
        for quote in ('"""', "'''"):
            if value.startswith(quote) and value.count(quote) == 1:
                skip_until = quote
        if skip_until is None:
            depth = max(0, _open_brackets(value))
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``; else the first line of a key under it (``p99.9_ms = 1`` is
    written as the key p99 with a sub-key); else the line of its longest written prefix
    (the table a missing key belongs in)."""
    if path in lines:
        return lines[path]
    under = [line for key, line in lines.items() if key[:len(path)] == path]
    if under:
        return min(under)
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
