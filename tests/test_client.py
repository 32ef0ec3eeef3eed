"""The API client against the sandbox on 127.0.0.1: every kind of answer is classified right."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from pipeline.errors import AuthRefused
from pipeline.settings import Settings, load_settings
from pipeline.submit.client import ApiClient, ClientOptions, Kind

GOOD = {"typeId": 101, "contactId": 5001}


def _settings(sandbox: Any, **override: str) -> Settings:
    return load_settings(environ={**sandbox.env(), **override})


def _create(settings: Settings, body: dict[str, Any], **options: Any) -> Any:
    async def go() -> Any:
        async with ApiClient(settings, ClientOptions(**options)) as api:
            return await api.create_job(json.dumps(body).encode())

    return asyncio.run(go())


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_created_and_rejected(sandbox: Any, transport: str) -> None:
    settings = _settings(sandbox)
    created = _create(settings, {**GOOD, "reference": f"CL-{transport}"}, transport=transport)
    assert created.kind == Kind.CREATED and created.status == 201 and created.job_id > 0
    rejected = _create(settings, {"typeId": 101, "contactId": 999999}, transport=transport)
    assert rejected.kind == Kind.REJECTED and rejected.status == 422
    assert "ContactId" in rejected.problem["errors"]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_lost_answer_is_unknown_and_the_job_exists(sandbox_factory: Any, transport: str) -> None:
    sandbox = sandbox_factory(p_lost=1.0)
    answer = _create(_settings(sandbox), {**GOOD, "reference": "LOST-1"}, transport=transport)
    # httpx-aiohttp maps this dropped connection to httpx.ConnectTimeout: it must not look "not sent".
    assert answer.kind == Kind.UNKNOWN, answer
    assert [job["reference"] for job in sandbox.jobs()] == ["LOST-1"]


def test_connection_refused_is_transient_not_unknown(sandbox: Any) -> None:
    settings = _settings(sandbox)
    nowhere = Settings(
        base_url="http://127.0.0.1:9/v1",
        token_url=settings.token_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        customer_id=settings.customer_id,
    )
    answer = _create(nowhere, GOOD)
    assert answer.kind == Kind.TRANSIENT and answer.status is None


def test_gateway_html_and_500(sandbox_factory: Any) -> None:
    html = _create(_settings(sandbox_factory(p502=1.0)), GOOD)
    # A gateway may give up while the server goes on creating the job: looked up, never resent blindly.
    assert html.kind == Kind.UNKNOWN and html.status == 502
    assert "non-JSON answer" in html.problem["detail"]
    server_error = _create(_settings(sandbox_factory(p500=1.0)), GOOD)
    assert server_error.kind == Kind.UNKNOWN and server_error.status == 500


def test_429_carries_retry_after(sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(rate_limit=1, burst=2)

    async def go() -> list[Any]:
        async with ApiClient(_settings(sandbox)) as api:
            return [await api.create_job(json.dumps(GOOD).encode()) for _ in range(4)]

    answers = asyncio.run(go())
    throttled = [a for a in answers if a.status == 429]
    assert throttled and all(a.kind == Kind.TRANSIENT and a.retry_after and a.retry_after >= 1 for a in throttled)


def test_expired_token_is_refreshed_once_on_401(sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(token_lifetime=1)

    async def go() -> tuple[Any, int]:
        async with ApiClient(_settings(sandbox)) as api:
            await api.tokens.get()
            time.sleep(1.3)  # the server forgets the token…
            api.tokens._expires_at = time.monotonic() + 3600  # …while we still believe in it: the 401 path
            answer = await api.create_job(json.dumps(GOOD).encode())
            return answer, api.tokens.refreshes

    answer, refreshes = asyncio.run(go())
    assert answer.kind == Kind.CREATED and refreshes == 2
    assert sandbox.stats()["requests"]["POST /v1/jobs"].get("401") == 1


def test_wrong_secret_is_auth_refused_naming_the_variables(sandbox: Any) -> None:
    with pytest.raises(AuthRefused, match="BIGCHANGE_CLIENT_ID and BIGCHANGE_CLIENT_SECRET") as caught:
        _create(_settings(sandbox, BIGCHANGE_CLIENT_SECRET="wrong-one"), GOOD)
    assert "wrong-one" not in str(caught.value)


def test_find_jobs_by_reference(sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    settings = _settings(sandbox)

    async def go() -> dict[str, int]:
        async with ApiClient(settings) as api:
            for ref in ("F-1", "F-2"):
                await api.create_job(json.dumps({**GOOD, "reference": ref}).encode())
            with pytest.raises(ValueError):
                await api.find_jobs([f"X{i}" for i in range(51)])
            return await api.find_jobs(["F-1", "F-2", "F-3"])

    found = asyncio.run(go())
    ids = {job["reference"]: job["id"] for job in sandbox.jobs()}
    assert found == {"F-1": ids["F-1"], "F-2": ids["F-2"]}
