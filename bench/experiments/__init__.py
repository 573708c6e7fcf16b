"""The registry of experiments: found through the ``seambench.experiments`` entry-point group,
the way pytest finds its plugins, so an experiment in another distribution installs like one.

``get`` returns one by name (loading it on first use); ``default_run`` names the ones
``seambench run`` runs when none is asked for, in their ``default_order``; ``register`` adds
one by hand (a test's toy experiment). Nothing is imported until it is asked for, so importing
the harness does no work.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from bench.experiments.base import (Analysis, Experiment, Progress, Rung, RunOption, RunSession,
                                    StepLoad)

__all__ = ["Analysis", "Experiment", "Progress", "Rung", "RunOption", "RunSession", "StepLoad",
           "ENTRY_POINT_GROUP", "default_run", "get", "register", "registered"]

ENTRY_POINT_GROUP = "seambench.experiments"
_registry: dict[str, Experiment] = {}


def _installed() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register(experiment: Experiment) -> Experiment:
    """Make ``experiment`` known by its name (replacing one of the same name)."""
    _registry[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    """The experiment ``name``; KeyError with the known names otherwise."""
    if name not in _registry:
        point = _installed().get(name)
        if point is None:
            raise KeyError(f"unknown experiment {name!r}; known: {', '.join(registered())}")
        experiment = point.load()
        if not isinstance(experiment, Experiment) or experiment.name != name:
            raise KeyError(f"the entry point {name!r} ({point.value}) is not an Experiment "
                           f"named {name!r}")
        register(experiment)
    return _registry[name]


def registered() -> list[str]:
    """Every experiment's name: installed or registered by hand."""
    return sorted(set(_registry) | set(_installed()))


def default_run() -> tuple[str, ...]:
    """What ``seambench run`` runs without ``--experiment``: the experiments with a
    ``default_order``, in that order within a trial."""
    chosen = [get(name) for name in registered()]
    return tuple(e.name for e in sorted((e for e in chosen if e.default_order is not None),
                                        key=lambda e: (e.default_order, e.name)))
