"""One leaf server: one replica of one shard of the catalog, and nothing else.

Small on purpose (no other component is built): a fan-out to 32 shards with 2 replicas each
is 64 of these on a 2-core machine. (gunicorn's --preload was measured and bought nothing
here: 0.24 CPU-s to start and 36 MiB PSS per leaf server either way.)
"""
from __future__ import annotations

import atexit

from flask import Flask

from shop.placement import Deployment, api_shape, leaf_of, local_leaves, prepare_leaf
from shop.search.routes import leaf_blueprint
from shop.server import deployment_from_env
from shop.storage import Databases
from shop.telemetry import telemetry_from_env
from shop.web import create_base_app


def create_app(deployment: Deployment | None = None, server: str | None = None) -> Flask:
    """App factory for leaf server ``server`` (``leaf.SHARD.REPLICA``); with no arguments,
    reads what ``seambench up`` passed in the environment."""
    if deployment is None:
        deployment, server = deployment_from_env()
    where = leaf_of(server or "")
    if where is None:
        raise ValueError(f"{server!r} is not a leaf server's name (leaf.SHARD.REPLICA)")
    shard, replica = where
    seeding = Databases()
    try:  # the set-up's connection is not the serving threads'
        prepare_leaf(deployment, shard, seeding)
    finally:
        seeding.close()
    databases = Databases()  # connections open lazily, one per worker thread
    leaves = local_leaves(deployment, databases, range(shard, shard + 1),
                          range(replica, replica + 1))
    app = create_base_app(server, deployment.service_credential, telemetry_from_env(),
                          api=api_shape(deployment))
    app.register_blueprint(leaf_blueprint(leaves))
    atexit.register(databases.close)
    return app
