"""Search over HTTP: public search and scatter, internal prices and shard queries."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response

from shop.auth.api import Auth
from shop.errors import InvalidRequest
from shop.search.api import Hit, Search
from shop.search.service import Scatter
from shop.web import (caller, field, int_arg, json_body, json_response,
                      require_service_credential, str_arg)

DEFAULT_LIMIT = 10


def hits_json(hits: list[Hit]) -> list[dict]:
    return [asdict(hit) for hit in hits]


def scatter_blueprint(scatter: Scatter, auth: Auth) -> Blueprint:
    """``/search/scatter``: served where the scatter runs (see ``Scatter``), which is the
    search process when shard calls are local and the gateway when they cross a hop."""
    bp = Blueprint("scatter", __name__)

    @bp.get("/search/scatter")
    def scatter_public() -> Response:
        caller(auth)
        n = int_arg("n", 4)
        hits = scatter.scatter(str_arg("q"), n, int_arg("limit", DEFAULT_LIMIT))
        return json_response({"results": hits_json(hits), "shards": n})

    return bp


def blueprint(search: Search, auth: Auth) -> Blueprint:
    bp = Blueprint("search", __name__)

    @bp.get("/search")
    def search_public() -> Response:
        caller(auth)
        hits = search.search(str_arg("q"), int_arg("limit", DEFAULT_LIMIT))
        return json_response({"results": hits_json(hits)})

    @bp.post("/internal/search/search")
    def search_internal() -> Response:
        require_service_credential()
        body = json_body()
        return json_response({"results": hits_json(
            search.search(field(body, "q", str), field(body, "limit", int)))})

    @bp.post("/internal/search/prices")
    def prices() -> Response:
        require_service_credential()
        skus = field(json_body(), "skus", list)
        if not all(isinstance(sku, str) for sku in skus):
            raise InvalidRequest("skus must be a list of strings")
        return json_response({"prices": search.prices(skus)})

    @bp.post("/internal/search/shard")
    def shard() -> Response:
        require_service_credential()
        body = json_body()
        hits = search.shard_search(field(body, "q", str), field(body, "shard", int),
                                   field(body, "shards", int), field(body, "limit", int))
        return json_response({"results": hits_json(hits)})

    return bp
