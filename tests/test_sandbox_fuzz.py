"""A spec-driven fuzzing pass (schemathesis) against the real sandbox on 127.0.0.1: whatever openapi.yaml lets a
client send — and what it does not, in the cases schemathesis derives from it — the sandbox answers with a
status the spec documents for that operation, never a server error.

Bounded: a few dozen generated cases per operation with a fixed seed (the whole pass takes well under a minute).
A sandbox of its own, calm (no faults, no rate limit: injected 5xx would be findings of our own making), so the
jobs the fuzzer creates never meet another test's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, seed, settings
from schemathesis import checks

from pipeline.sandbox.process import SandboxProcess

OPENAPI = Path(__file__).resolve().parents[1] / "pipeline" / "sandbox" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture(scope="module")
def token(fuzzed: SandboxProcess) -> str:
    env = fuzzed.env()
    answer = httpx.post(
        env["BIGCHANGE_TOKEN_URL"],
        data={
            "grant_type": "client_credentials",
            "client_id": env["BIGCHANGE_CLIENT_ID"],
            "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
        },
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@SCHEMA.parametrize()
@seed(20261203)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, fuzzed: SandboxProcess, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Customer-Id": fuzzed.env()["BIGCHANGE_CUSTOMER_ID"]}
    case.call_and_validate(
        base_url=fuzzed.root_url,
        headers=headers,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
        timeout=30,
    )


def test_the_pass_reached_every_operation(fuzzed: SandboxProcess) -> None:
    """(runs after the pass, same module) every operation of the spec was called, and answered more than one way."""
    requests = fuzzed.stats()["requests"]
    for path, methods in yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))["paths"].items():
        for method in methods:
            statuses = requests.get(f"{method.upper()} {path}", {})
            assert sum(statuses.values()) >= 10 and len(statuses) >= 2, (method, path, statuses)
