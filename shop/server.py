"""The Flask app of one process: the blueprints of the components it hosts.

The monolith and every microservice are this same app with a different ``hosted`` set;
``monolith/`` and ``microservices/`` only name the two common cases.
"""
from __future__ import annotations

import atexit
import os

from flask import Flask

from shop.auth import routes as auth_routes
from shop.billing import routes as billing_routes
from shop.chain import routes as chain_routes
from shop import observe
from shop.notify import routes as notify_routes
from shop.notify.service import NotifyService
from shop.balance import hop_events
from shop.placement import Deployment, ShopProcess, api_shape, build_process
from shop.readiness import Dependencies
from shop.search import routes as search_routes
from shop.telemetry import Telemetry, telemetry_from_env
from shop.tracing import tracer_from_env
from shop.web import create_base_app

DEPLOYMENT_ENV = "SEAMBENCH_DEPLOYMENT"
PROCESS_ENV = "SEAMBENCH_PROCESS"
THREADS_ENV = "SEAMBENCH_THREADS"  # the server's gthread threads per worker
DEFAULT_THREADS = 8


def deployment_from_env() -> tuple[Deployment, str]:
    """What the launcher passes to a gunicorn worker: the deployment JSON and a process name."""
    try:
        return Deployment.from_json(os.environ[DEPLOYMENT_ENV]), os.environ[PROCESS_ENV]
    except KeyError as exc:
        raise RuntimeError(f"{exc.args[0]} is not set: start processes with `seambench up`") from None


def threads_from_env() -> int:
    """The threads per worker the launcher started this server with (bulkheads are shares
    of them); ``DEFAULT_THREADS`` when not said."""
    try:
        return max(1, int(os.environ.get(THREADS_ENV, DEFAULT_THREADS)))
    except ValueError:
        return DEFAULT_THREADS


def create_process_app(deployment: Deployment, process: str) -> Flask:
    # None unless SEAMBENCH_TRACE_RATIO is set; asked first, so a bad setting fails at once
    tracer = tracer_from_env(process)
    shop = build_process(deployment, process, threads_from_env())
    telemetry = telemetry_from_env(live=shop.metrics)
    attach_telemetry(shop, telemetry)
    for hop in shop.hops:  # the app's spans and the hops' are of one provider
        hop.tracer = tracer
    # Ready when every process it calls answers (as ``shop.hops`` says: a hop per process).
    dependencies = Dependencies({hop.name: [r.base_url for r in getattr(hop, "replicas", [hop])]
                                 for hop in shop.hops})
    app = create_base_app(process, deployment.service_credential, telemetry, dependencies.down,
                          api_shape(deployment), tracer)
    register_components(app, shop)
    app.extensions["seambench.shop"] = shop
    shop.start()
    atexit.register(shop.close)
    return app


def attach_telemetry(shop: ShopProcess, telemetry: Telemetry) -> None:
    """Hand ``telemetry``'s observers to the hops and the notify service ``build_process``
    made, before any traffic: the components stay free of prometheus_client."""
    for hop in shop.hops:
        hop.observer = telemetry.hop_observer(hop.name)
        hop_events(hop, telemetry.resilience_observer(hop.name))
    if isinstance(shop.notify, NotifyService):
        shop.notify.on_stored = telemetry.notification_stored
    if shop.scatter is not None:
        shop.scatter.observer = telemetry.scatter_observer()


def register_components(app: Flask, shop: ShopProcess) -> None:
    if "auth" in shop.hosted:
        app.register_blueprint(auth_routes.blueprint(shop.auth))
    if "search" in shop.hosted:
        app.register_blueprint(search_routes.blueprint(shop.search, shop.auth))
    if shop.scatter is not None:
        app.register_blueprint(search_routes.scatter_blueprint(shop.scatter, shop.auth))
    if shop.leaves:
        app.register_blueprint(search_routes.leaf_blueprint(shop.leaves))
    if "billing" in shop.hosted:
        app.register_blueprint(billing_routes.blueprint(shop.billing, shop.auth))
    if "notify" in shop.hosted:
        app.register_blueprint(notify_routes.blueprint(shop.notify, shop.auth))
    app.register_blueprint(chain_routes.blueprint(shop.links, shop.auth))
    app.register_blueprint(observe.blueprint(shop.billing, shop.notify))
