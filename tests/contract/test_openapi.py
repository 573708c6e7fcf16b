"""The OpenAPI document is the contract: every placement serves it, and schemathesis fuzzes
every operation of it against every placement (in-process through Flask's test client, the
others over HTTP). Checked: no server error, every status documented, JSON where JSON is
said, every body (errors too) as its schema says."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error,
                                 response_schema_conformance, status_code_conformance)

from shop.openapi import OPENAPI_PATH, openapi_document
from tests.contract.conftest import User

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = 15  # per operation and placement: ~11 operations x 9 placements, bounded


@pytest.fixture(scope="session")
def users() -> dict[str, User]:
    return {}


def test_every_placement_serves_the_document(api):
    status, document = api.call("GET", OPENAPI_PATH)
    assert status == 200 and document == openapi_document()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, placement, users):
    name, api, shop = placement
    if name not in users:
        users[name] = User(api, prefix="fuzz")
        users[name].call("POST", "/billing/topup", {"amount_cents": 1_000_000})
    auth = {"Authorization": f"Bearer {users[name].token}"}
    if shop is not None:
        response = case.call(base_url=shop.base_url, headers=auth, timeout=30)
    else:  # the in-process monolith: the same request through Flask's test client
        kwargs = case.as_transport_kwargs(base_url="http://localhost", headers=auth)
        path = kwargs["url"].removeprefix("http://localhost")
        response = api.client.open(path, method=kwargs["method"], headers=kwargs.get("headers"),
                                   query_string=kwargs.get("params"), json=kwargs.get("json"),
                                   data=kwargs.get("data"))
    case.validate_response(response, checks=CHECKS)
