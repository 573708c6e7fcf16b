"""What an experiment's setting may be, checked in one place wherever the value came from.

``settings_with`` applies overrides (``run --set``, an experiment's own options) to a
profile's settings: each value is checked against its field's type (a whole number for an
``int``, a finite number for a ``float``, a list or one value for a ``tuple[...]``, a table
for a nested dataclass) and against the range its name says (``LIMITS``). A value outside
gives ``SettingError``, one line naming the setting, before anything is started: a typo
such as ``duration_s=1e12`` must not start a run that never ends.

The ranges are what a run on one machine can do, not what the code could represent: the
generator tops out at a few thousand requests per second per process (``seambench
calibrate``), a step of a day is already absurd, and each user costs a registration.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

MAX_RATE = 50_000  # requests per second: several generator processes' worth on this class of machine
# (pattern over the field's name, lowest, highest, what it is): the first that matches
# applies; a number no rule names is only required to be finite and below ANY_NUMBER.
LIMITS: tuple[tuple[str, float, float, str], ...] = (
    (r"^duration_s$", 0.1, 86_400, "seconds"),
    (r"_s$", 0, 86_400, "seconds"),
    (r"_ms$", 0, 60_000, "ms"),
    (r"^rates?$", 0.1, MAX_RATE, "requests per second"),
    (r"^users$", 1, 10_000, "users"),
    (r"(^|_)trials$", 1, 1_000, "trials"),
    (r"^(ns|hedge_n)$", 1, 4_096, "leaves per request"),
    (r"^ks$", 0, 64, "hops"),
    (r"^(shards|replicas)$", 1, 4_096, "leaves"),
    (r"_p$", 0, 1, ""),  # a probability
    (r"^(instances|single_leaf_weight)$", 0, 10_000, ""),
    (r"_(requests|round_trips)$|^requests_per_step$", 0, 1_000_000, "requests"),
    (r"^(skus|leaf_threads)$", 1, 1_000_000, ""),
    (r"^(time_scale|target)$", 0.001, 1_000, "a factor"),
)
ANY_NUMBER = 1e9


class SettingError(ValueError):
    """A setting that cannot be used; the message names it (``journey.rates``) and says why."""


def settings_with(experiment: str, base: T, overrides: Mapping[str, Any] | None) -> T:
    """``base`` (an experiment's settings dataclass) with ``overrides`` applied, each value
    checked and converted to its field's type (a single number for a tuple field is a tuple
    of one). Raises SettingError naming ``experiment.field``."""
    hints = typing.get_type_hints(type(base))
    known = {f.name for f in dataclasses.fields(base)}
    values = {}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise SettingError(f"{experiment}.{key}: no such setting; known: "
                               f"{', '.join(sorted(known))}")
        values[key] = _checked(f"{experiment}.{key}", key, hints[key], value)
    try:
        return dataclasses.replace(base, **values)
    except (TypeError, ValueError) as exc:  # the settings' own cross-field checks
        raise SettingError(f"{experiment}: {str(exc).splitlines()[0]}") from None


def _checked(name: str, field: str, kind: Any, value: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _checked(name, field, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise SettingError(f"{name}: needs at least one value")
        return tuple(_checked(name, field, args[0], item) for item in items)
    if dataclasses.is_dataclass(kind):
        return _table(name, kind, value)
    if kind is str:
        if not isinstance(value, str):
            raise SettingError(f"{name}: must be text, not {value!r}")
        return value
    if kind in (int, float):
        return _number(name, field, kind, value)
    return value


DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
SECONDS_PER = {"ms": 0.001, "s": 1, "m": 60, "h": 3_600, None: 1}


def parse_duration(text: str) -> float:
    """Seconds from ``30s``, ``2m``, ``1.5h``, ``250ms`` or a bare number (seconds), as
    Locust, k6 and wrk2 take them. Raises ValueError."""
    match = DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (say 30s, 2m, 1h, 250ms or seconds)")
    return float(match.group(1)) * SECONDS_PER[match.group(2)]


def _number(name: str, field: str, kind: type, value: Any) -> float | int:
    if isinstance(value, str) and field.endswith("_s"):  # --set journey.duration_s=2m
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise SettingError(f"{name}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(f"{name}: must be a number, not {value!r}")
    if not math.isfinite(value):
        raise SettingError(f"{name}: must be a finite number, not {value!r}")
    if kind is int:
        if value != int(value):
            raise SettingError(f"{name}: must be a whole number, not {value!r}")
        value = int(value)
    low, high, unit = limit_of(field)
    if not low <= value <= high:
        raise SettingError(f"{name}: must be from {low:g} to {high:g}"
                           f"{' ' + unit if unit else ''}, not {value!r}")
    return value


def _table(name: str, kind: type, value: Any) -> Any:
    """A nested settings dataclass from a table (JSON object) of its fields."""
    if dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, Mapping):
        raise SettingError(f"{name}: must be a table of {kind.__name__}'s fields, not {value!r}")
    hints = typing.get_type_hints(kind)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise SettingError(f"{name}: no field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    fields = {key: _checked(f"{name}.{key}", key, hints[key], v) for key, v in value.items()}
    try:
        return kind(**fields)
    except (TypeError, ValueError) as exc:
        raise SettingError(f"{name}: {str(exc).splitlines()[0]}") from None


def limit_of(field: str) -> tuple[float, float, str]:
    """(lowest, highest, unit) a numeric setting named ``field`` may take."""
    for pattern, low, high, unit in LIMITS:
        if re.search(pattern, field):
            return low, high, unit
    return -ANY_NUMBER, ANY_NUMBER, ""


def finite_range(low: float, high: float, duration: bool = False) -> Any:
    """A click parameter type for a number from ``low`` to ``high``: click's FloatRange, which
    lets NaN through (it compares false with both bounds), refusing it too. With
    ``duration``, seconds that may also be written ``30s``, ``2m``, ``1h``, ``250ms``."""
    import click  # only the command line needs it

    class FiniteRange(click.FloatRange):
        name = "duration" if duration else "float range"

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            if duration and isinstance(value, str):
                try:
                    value = parse_duration(value)
                except ValueError as exc:
                    self.fail(str(exc), param, ctx)
            number = super().convert(value, param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            return number

    return FiniteRange(low, high)
