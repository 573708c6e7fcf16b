"""The registry of experiments. ``register`` adds one; ``get`` and ``DEFAULT`` are what
``seambench run`` uses. Experiment modules are imported lazily, on first use, so importing
the harness does no work."""
from __future__ import annotations

import importlib

from bench.experiments.base import Analysis, Experiment, Progress, Rung, RunSession, StepLoad

__all__ = ["Analysis", "Experiment", "Progress", "Rung", "RunSession", "StepLoad",
           "DEFAULT", "get", "register", "registered"]

DEFAULT = ("hops", "journey", "fanout")  # what `seambench run` runs, in this order within a trial
_BUILTIN = {"hops": "bench.experiments.hops.experiment", "journey": "bench.experiments.journey.experiment",
            "fanout": "bench.experiments.fanout.experiment", "chaos": "bench.experiments.chaos.experiment"}
_registry: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Make ``experiment`` known by its name (replacing one of the same name)."""
    _registry[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    """The registered experiment ``name``; KeyError with the known names otherwise."""
    if name not in _registry and name in _BUILTIN:
        register(importlib.import_module(_BUILTIN[name]).EXPERIMENT)
    if name not in _registry:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(registered())}")
    return _registry[name]


def registered() -> list[str]:
    return sorted(set(_registry) | set(_BUILTIN))
