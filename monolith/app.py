"""The monolith: one process hosting every component, all on one database."""
from __future__ import annotations

from flask import Flask

from shop.placement import Deployment
from shop.server import create_process_app, deployment_from_env


def create_app(deployment: Deployment | None = None, process: str | None = None) -> Flask:
    """App factory; with no arguments, reads what ``seambench up`` passed in the environment."""
    if deployment is None:
        deployment, process = deployment_from_env()
    return create_process_app(deployment, process or next(iter(deployment.topology.processes)))
