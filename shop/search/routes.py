"""Search over HTTP: public search and scatter, internal prices and leaf queries."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from flask import Blueprint, Response, request

from shop.auth.api import Auth
from shop.errors import InvalidRequest, NotFound
from shop.search.api import Hit, Search
from shop.search.leaves import Leaf, Scatter
from shop.web import (caller, field, float_arg, int_arg, json_body, json_response,
                      require_service_credential, str_arg)

DEFAULT_LIMIT = 10


def hits_json(hits: list[Hit]) -> list[dict]:
    return [asdict(hit) for hit in hits]


def scatter_blueprint(scatter: Scatter, auth: Auth) -> Blueprint:
    """``GET /search/scatter?q=&n=&limit=``: the best hits of shards 0..n-1 (n = all of them
    searches the whole catalog), served where the scatter runs: the process hosting search
    when leaf calls are local, the gateway when they cross hops. Optional: ``hedge_ms`` (a
    backup call to another replica of a shard that has not answered by then) or
    ``hedge_share`` (the delay after which about that share of primaries are still out,
    tracked by this process: shop/search/hedging.py), and
    ``delay``/``seed`` (a latency injection the deployment defines, for measurement). The
    answer says, per shard asked, how long it took as the scatter timed it (``leaf_us``, µs:
    what F(t)^n is estimated from), and how much of that its call waited for a thread of the
    scatter's pool, shared by every request (``wait_us``)."""
    bp = Blueprint("scatter", __name__)

    @bp.get("/search/scatter")
    def scatter_public() -> Response:
        caller(auth)
        n = int_arg("n", 4)
        hedge = float_arg("hedge_ms") if "hedge_ms" in request.args else None
        share = float_arg("hedge_share") if "hedge_share" in request.args else None
        seed = int_arg("seed") if "seed" in request.args else None
        result = scatter.scatter(str_arg("q"), n, int_arg("limit", DEFAULT_LIMIT), hedge_ms=hedge,
                                 hedge_share=share,
                                 delay=request.args.get("delay"), seed=seed)
        return json_response({"results": hits_json(result.hits), "shards": n,
                              "of": scatter.shards, "backups": result.backups,
                              "leaf_us": list(result.leaf_us), "wait_us": list(result.wait_us),
                              **({"hedge_late_us": result.hedge_late_us}
                                 if result.hedge_late_us is not None else {}),
                              **({"hedge_ms": round(result.hedge_ms, 3)}
                                 if result.hedge_ms is not None else {})})

    return bp


def leaf_blueprint(leaves: Mapping[tuple[int, int], Leaf]) -> Blueprint:
    """``/internal/leaf/query``: the leaves this process hosts, by (shard, replica)."""
    bp = Blueprint("leaf", __name__)

    @bp.post("/internal/leaf/query")
    def leaf_query() -> Response:
        require_service_credential()
        body = json_body()
        where = (field(body, "shard", int), field(body, "replica", int))
        if where not in leaves:
            raise NotFound(f"no leaf for shard {where[0]}, replica {where[1]} here")
        delay, seed = body.get("delay"), body.get("seed")
        if delay is not None:
            delay = field(body, "delay", str)
        if seed is not None:
            seed = field(body, "seed", int)
        hits = leaves[where].query(field(body, "q", str), field(body, "limit", int), delay, seed)
        return json_response({"results": hits_json(hits)})

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

    return bp
