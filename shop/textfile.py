"""Reading the project's own text files (topologies, budgets, fault plans) with one error."""
from __future__ import annotations

from pathlib import Path


class TextFileError(ValueError):
    """A file that cannot be read as UTF-8 text; the message is one line naming it."""


def read_text_file(path: str | Path) -> str:
    """The UTF-8 text of ``path``. Raises TextFileError: unreadable, or not UTF-8 (which
    byte, where)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TextFileError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                            f"offset {exc.start})") from None
    except OSError as exc:
        raise TextFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
