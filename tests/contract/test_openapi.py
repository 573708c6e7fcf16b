"""The OpenAPI document is the contract: every placement serves the document of its
deployment's shape, and schemathesis fuzzes every operation of it against every placement
(in-process through the WSGI app, the others over HTTP through the edge) with every check it
has (`schemathesis run --checks all`): no server error, every status and header documented,
JSON where JSON is said, every body as its schema says, schema-valid requests accepted and
schema-violating ones refused, a 405 with its Allow header, auth not ignored."""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation import GenerationMode

from shop.openapi import OPENAPI_PATH, ApiShape, openapi_document
from tests.contract.conftest import User
from tests.placements import PLACEMENTS, SMALL_FANOUT_SHARDS

load_all_checks()
EVERY_CHECK = CHECKS.get_all()
EXAMPLES = 60  # per operation and placement, positive and negative
SMALL_FLEET = "microservices-fanout-small"  # 4 shards; every other fleet has 32


def shape_of(name: str) -> ApiShape:
    """What the fleet ``name`` was deployed with (tests/placements.py): no latency injection."""
    return ApiShape(shards=SMALL_FANOUT_SHARDS if name == SMALL_FLEET else 32)


def fuzzed(shape: ApiShape) -> schemathesis.schemas.BaseSchema:
    schema = schemathesis.openapi.from_dict(openapi_document(shape))
    # No invented query parameters: hypothesis names some that never reach the wire (an
    # empty name with an empty list), and a request that sent none is then judged as if it
    # had. The refusal of unknown parameters is tested by name in test_shop_contract.py.
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    allow_extra_parameters=False)
    # A schema-valid request may still meet a state that refuses it: 402 (the fuzz user's
    # money ran out), besides the 404, 409 and 429 schemathesis already expects
    schema.config.checks.positive_data_acceptance.expected_statuses.append("402")
    # and a schema-violating request may be refused for its size before its values are
    # read: a 413 body, a 414 request line, 431 headers
    schema.config.checks.negative_data_rejection.expected_statuses.extend(["413", "414", "431"])
    return schema


WIDE, SMALL = fuzzed(shape_of("microservices")), fuzzed(shape_of(SMALL_FLEET))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="session")
def users() -> dict[str, User]:
    return {}


def test_every_placement_serves_the_document_of_its_shape(placement):
    name, api, _ = placement
    status, document = api.call("GET", OPENAPI_PATH)
    assert status == 200 and document == openapi_document(shape_of(name))


@WIDE.parametrize()
@pytest.mark.parametrize("placement", [p for p in PLACEMENTS if p != SMALL_FLEET], indirect=True)
@FUZZ
def test_every_operation_answers_as_documented(case, placement, users):
    answers_as_documented(case, placement, users)


@SMALL.parametrize()
@pytest.mark.parametrize("placement", [SMALL_FLEET], indirect=True)
@FUZZ
def test_every_operation_of_the_small_fleet_answers_as_documented(case, placement, users):
    answers_as_documented(case, placement, users)


def fuzz_user(name: str, api, users: dict[str, User]) -> User:
    """The placement's fuzzing user, registered and funded on first use."""
    if name not in users:
        users[name] = User(api, prefix="fuzz")
        users[name].call("POST", "/billing/topup", {"amount_cents": 1_000_000})
    return users[name]


def answers_as_documented(case, placement, users) -> None:
    name, api, shop = placement
    auth = {"Authorization": f"Bearer {fuzz_user(name, api, users).token}"}
    if case.headers and "Idempotency-Key" in case.headers and case.meta is not None \
            and case.meta.generation.mode is GenerationMode.POSITIVE:
        # a key names one operation: hypothesis would send one key with many bodies, which
        # the shop rightly refuses (422, as draft-ietf-httpapi-idempotency-key-header says)
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    # the WSGI app for the in-process monolith, else HTTP: the checks that send again
    # (without auth, with an undeclared method) take their transport from these two
    case.operation.app = case.operation.schema.app = api.app if shop is None else None
    transport = ({"base_url": shop.base_url, "timeout": 30} if shop is not None
                 else {"base_url": "http://localhost"})
    response = case.call(headers=auth, **transport)
    case.validate_response(response, checks=EVERY_CHECK, headers=auth,
                           transport_kwargs={**transport, "headers": auth})



@pytest.mark.parametrize("placement", [p for p in PLACEMENTS if p != SMALL_FLEET], indirect=True)
def test_the_links_hold_in_sequences_of_calls(placement, users):
    """The stateful phase: sequences of calls that follow the document's links (a user
    registered then logged in; a checkout's order read back), every check on every answer."""
    name, api, shop = placement
    auth = {"Authorization": f"Bearer {fuzz_user(name, api, users).token}"}
    schema = fuzzed(shape_of(name))
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    schema.app = api.app if shop is None else None
    transport = ({"base_url": shop.base_url, "timeout": 30} if shop is not None
                 else {"base_url": "http://localhost"})
    followed: list[str] = []

    class Sequences(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            # What must differ from call to call does: hypothesis replays a sequence's
            # choices, and a server that kept the first's state (a username taken, a key
            # used) would answer otherwise and the sequence would not replay
            if case.headers and "Idempotency-Key" in case.headers:
                case.headers["Idempotency-Key"] = uuid.uuid4().hex
            if case.path == "/auth/register" and isinstance(case.body, dict):
                case.body["username"] = f"s{uuid.uuid4().hex[:31]}"
            if case.path == "/billing/checkout" and isinstance(case.body, dict):
                # skus that exist (a fuzzer cannot guess the catalog), one of each, and
                # the money for them (at most 50 lines under 1,000.00 each): a checkout
                # answers 201 however the sequence went before it
                for n, line in enumerate(case.body.get("items") or ()):
                    if isinstance(line, dict):
                        line.update(sku=f"SKU-{n + 1:06d}", qty=1)
                users[name].call("POST", "/billing/topup", {"amount_cents": 5_000_000})
            return {"headers": auth, **transport}

        def after_call(self, response, case):
            super().after_call(response, case)
            followed.append(f"{case.method} {case.path} {response.status_code}")

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=EVERY_CHECK, headers=auth,
                                   transport_kwargs={**transport, "headers": auth},
                                   recorder=self.recorder)

    Sequences.run(settings=settings(max_examples=40, deadline=None, stateful_step_count=6,
                                    database=None, phases=[Phase.generate],
                                    suppress_health_check=list(HealthCheck)))
    assert "POST /auth/login 200" in followed, followed[:40]
    assert any(f.startswith("GET /billing/orders/{order_id} 200") for f in followed), \
        sorted(set(followed))
