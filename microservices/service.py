"""One microservice: a process hosting the components its topology gives it."""
from __future__ import annotations

from flask import Flask

from shop.placement import Deployment
from shop.server import create_process_app, deployment_from_env


def create_app(deployment: Deployment | None = None, process: str | None = None) -> Flask:
    """App factory; with no arguments, reads what ``seambench up`` passed in the environment."""
    if deployment is None:
        deployment, process = deployment_from_env()
    if process is None:
        raise ValueError("a microservice needs the name of the process it is")
    return create_process_app(deployment, process)
