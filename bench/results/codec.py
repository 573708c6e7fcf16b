"""The one codec of the harness's typed records: a dataclass to JSON-ready data and back.

``encode`` and ``decode`` (cattrs) serve the manifest's configuration (``RunConfig.describe``
and ``RunConfig.from_manifest``) and each experiment's recorded settings
(``RunData.settings_of``), so what is written is read back as the same types, nested
dataclasses, tuples and optional fields included, without a hand-written reader per type.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

import cattrs

T = TypeVar("T")


@cache
def _converter() -> cattrs.Converter:
    return cattrs.Converter()


def encode(value: Any) -> Any:
    """``value`` (a dataclass, or containers of them) as dicts, lists and plain values."""
    return _converter().unstructure(value)


def decode(cls: type[T], data: Mapping[str, Any], base: T | None = None) -> T:
    """``data`` as a ``cls``. A field ``data`` lacks takes ``base``'s value, or else the
    field's default. Raises ValueError naming what does not fit (a missing field, a value of
    the wrong type)."""
    merged = {**(encode(base) if base is not None else {}), **dict(data)}
    try:
        return _converter().structure(merged, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        problems = cattrs.transform_error(exc) if isinstance(exc, cattrs.BaseValidationError) \
            else [str(exc)]
        raise ValueError(f"not a {cls.__name__}: {'; '.join(problems)}") from None
