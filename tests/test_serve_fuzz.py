"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis 4, valid and invalid
inputs): no request may produce a 500 or a response that breaks the schema.

The app runs in-process (ASGI) with a scripted model and the ``hash`` embedder, an API
key configured (schemathesis sends it, as the schema declares the header), and a
bounded number of examples per operation so the test stays fast.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from memlab.agent import load_settings
from memlab.llm.mock import MockLLM
from memlab.serve import build_app

API_KEY = "fuzz-key"


_DATA = Path(tempfile.mkdtemp(prefix="memlab-fuzz-"))
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)


def _app() -> Any:
    """Built at import: schemathesis collects operations from the schema then.
    (``schemathesis.pytest.from_fixture`` fails under this pytest with
    "'Function' object has no attribute '_nodeid'".)"""
    agent_settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(_DATA),
        "server.api_key": API_KEY, "server.max_body_bytes": 8192})
    return build_app(agent_settings, llm=MockLLM(["Noted."]))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_on_any_input(case: Any) -> None:
    case.call_and_validate(
        headers={"X-API-Key": API_KEY},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])


_FIELDS = {
    "/chat": ("message", "user_id", "include_memory_search"),
    "/memory/add": ("content", "memory_type", "user_id"),
    "/memory/search": ("query", "limit", "user_id"),
    "/memory/consolidate": ("user_id",),
}
_NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e999")
_values = st.one_of(
    st.sampled_from(_NON_FINITE),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f)),
    st.sampled_from(["core", "recall", "archival"]).map(json.dumps),
    st.text(max_size=30).map(json.dumps),
    st.integers(-10, 100).map(str),
    st.sampled_from([f'"{"记" * n}"' for n in (300, 2000, 8000)]),  # oversized core memories
)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[str, str]:
    route = draw(st.sampled_from(sorted(_FIELDS)))
    names = draw(st.lists(st.sampled_from(_FIELDS[route]), unique=True, min_size=1))
    if route == "/memory/add" and draw(st.booleans()):
        names = [n for n in names if n != "memory_type"]
        return route, "{" + ", ".join(
            [f'"{n}": {draw(_values)}' for n in names] + ['"memory_type": "core"']) + "}"
    return route, "{" + ", ".join(f'"{n}": {draw(_values)}' for n in names) + "}"


_client = TestClient(_app())


@given(_bodies())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_non_finite_numbers_and_oversized_core_memories_never_give_a_5xx(
        body: tuple[str, str]) -> None:
    route, text = body
    response = _client.post(route, content=text, headers={
        "X-API-Key": API_KEY, "content-type": "application/json"})
    assert response.status_code < 500, (route, text[:200], response.text[:300])
    assert response.status_code in (200, 413, 422), (route, text[:200], response.text[:300])
    response.json()  # always a JSON body
