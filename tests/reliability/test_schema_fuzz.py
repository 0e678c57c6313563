"""Requests generated from the OpenAPI schema by schemathesis against a live server: none breaks it.

For every operation, hypothesis draws schema-valid requests and, separately, invalid ones
(wrong types, missing fields, bad ids, no or a wrong key) and sends them to the live API,
which wants an API key. Every answer must be no 5xx, a documented status with a body that
matches its documented schema, a 4xx for invalid data and a 401 without a valid key.
Not checked: that schema-valid requests are accepted, since random bytes that satisfy
``format: binary`` are no image and rightly get 422.

schemathesis's own pytest plugin does not run under this pytest, so each operation's
hypothesis strategy is driven directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings
from tests.reliability.conftest import API_KEY

EXAMPLES = 25  # per operation and mode: about 500 requests in all, in seconds
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
KEY = {"X-API-Key": API_KEY}
# The app's schema, built here so that pytest can name a test per operation; the live one must equal it.
SPEC = create_app(Settings(redis_url="redis://unused", api_keys=API_KEY)).openapi()
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(SPEC).get_all_operations()]


def takes_input(operation) -> bool:
    """Whether a request to it can be made invalid at all (health checks take nothing)."""
    described = SPEC["paths"][operation.path][operation.method.lower()]
    return bool({"parameters", "requestBody", "security"} & set(described))


RUNS = [
    pytest.param(operation, mode, id=f"{operation.label} {mode.value}")
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or takes_input(operation)
]


def test_the_live_server_serves_the_schema_that_is_fuzzed(keyed_http):
    assert keyed_http.get("/openapi.json").json() == SPEC


@pytest.mark.parametrize("operation, mode", RUNS)
def test_no_request_breaks_the_server(shared_stack, operation, mode):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answered_as_documented(case):
        response = case.call(base_url=shared_stack.url, headers=KEY, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=KEY)

    answered_as_documented()
