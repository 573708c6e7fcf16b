"""What ``seambench list`` shows: every name a command line or a file may use, with the
defaults behind it (experiments and their settings per profile, built-in topologies, fault
plans, budget figures), read from the code that uses them so it cannot drift."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

PROFILE_ORDER = ("quick", "full", "smoke")


def catalog() -> dict[str, Any]:
    """Everything listed, as plain data (``seambench list --json``)."""
    from bench.experiments import default_run, get, registered
    from bench.system.faults import PLANS
    from shop.placement import load_topology
    from shop.topology import built_in_topologies

    experiments = {}
    for name in registered():
        experiment = get(name)
        profiles = {p: experiment.settings(p) for p in PROFILE_ORDER}
        fields = [f.name for f in dataclasses.fields(profiles["quick"])]
        figures = experiment.budget_figures()
        experiments[name] = {
            "title": experiment.title, "default": name in default_run(),
            "settings": {f: {p: _plain(getattr(s, f)) for p, s in profiles.items()}
                         for f in fields},
            "budget_figures": [m.name for m in figures.metrics] if figures else []}
    topologies = {}
    for name in sorted(built_in_topologies()):
        topology = load_topology(name)
        topologies[name] = {"processes": {p: list(c) for p, c in topology.processes.items()},
                            "replicas": {p: topology.scale_of(p).replicas
                                         for p in topology.processes},
                            "leaf_servers": len(topology.leaf_servers()),
                            "gateway": topology.gateway, "extras": topology.extras()}
    return {"experiments": experiments, "topologies": topologies,
            "fault_plans": sorted(PLANS)}


def render(doc: Mapping[str, Any]) -> str:
    """The catalog as text for a terminal."""
    lines = ["Experiments (run --experiment NAME; change a setting with --set NAME.FIELD=VALUE;",
             "values per profile: " + " / ".join(PROFILE_ORDER) + "):"]
    for name, e in doc["experiments"].items():
        lines.append(f"  {name}{' (default)' if e['default'] else ''}: {e['title']}")
        for field, values in e["settings"].items():
            shown = [json.dumps(values[p], separators=(",", ":")) for p in PROFILE_ORDER]
            same = len(set(shown)) == 1
            lines.append(f"      {field} = {shown[0] if same else ' / '.join(shown)}")
    lines.append("Topologies (--topology NAME, or a path to a .toml of your own):")
    for name, t in doc["topologies"].items():
        parts = ", ".join(f"{p}[{'+'.join(c)}]" + (f" x{t['replicas'][p]}"
                                                    if t["replicas"][p] > 1 else "")
                          for p, c in t["processes"].items())
        leaves = f", {t['leaf_servers']} leaf servers" if t["leaf_servers"] else ""
        needs = f"; needs seambench[{','.join(t['extras'])}]" if t["extras"] else ""
        lines.append(f"  {name}: {parts}{leaves}{' behind a gateway' if t['gateway'] else ''}"
                     f"{needs}")
    lines.append("Fault plans (--plan NAME, or a plan .toml of your own):")
    lines.append("  " + ", ".join(doc["fault_plans"]))
    lines.append("Budget figures (a budgets file's metric = ..., per experiment):")
    for name, e in doc["experiments"].items():
        if e["budget_figures"]:
            lines.append(f"  {name}: {', '.join(e['budget_figures'])}")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
