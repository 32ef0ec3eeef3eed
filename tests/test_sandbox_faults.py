"""Fault injection of the sandbox, for real over 127.0.0.1: expired tokens, rate limit (429 + Retry-After),
seeded 500/502/503 (ratios and determinism), lost answers, slow answers, latency, run-time changes."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from pipeline.sandbox.process import SandboxProcess


def job(reference: str, **fields: Any) -> dict[str, Any]:
    return {"typeId": 101, "contactId": 5001, "reference": reference, **fields}


def statuses(api: Any, prefix: str, count: int) -> list[int]:
    return [api.post_job(job(f"{prefix}-{n}")).status_code for n in range(count)]


def test_expired_token_is_401(sandbox_factory: Any, sandbox_api: Any) -> None:
    api = sandbox_api(sandbox_factory(token_lifetime=1))
    assert api.post_job(job("T-1")).status_code == 201
    time.sleep(1.1)
    answer = api.post_job(job("T-2"))
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert [j["reference"] for j in api.sandbox.jobs()] == ["T-1"]
    api.headers["Authorization"] = f"Bearer {api.new_token()}"  # a new token works again
    assert api.post_job(job("T-2")).status_code == 201


def test_token_lifetime_is_reported_and_changeable(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(token_lifetime=120)
    api = sandbox_api(sandbox)
    env = sandbox.env()
    form = {
        "grant_type": "client_credentials",
        "client_id": env["BIGCHANGE_CLIENT_ID"],
        "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
    }
    assert api.client.post(sandbox.token_url, data=form).json()["expires_in"] == 120
    sandbox.set_faults(token_lifetime=7)
    assert api.client.post(sandbox.token_url, data=form).json()["expires_in"] == 7


def test_rate_limit_429_with_retry_after(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(rate_limit=4, burst=4)
    api = sandbox_api(sandbox)  # its token request takes one of the 4
    answers = [api.post_job(job(f"RL-{n}")) for n in range(12)]
    codes = [a.status_code for a in answers]
    assert codes[:3] == [201, 201, 201] and codes.count(429) >= 5, codes  # refills 4/s: slack for a busy machine
    limited = [a for a in answers if a.status_code == 429]
    for answer in limited:
        assert answer.headers["retry-after"].isdigit() and int(answer.headers["retry-after"]) >= 1
        assert answer.json()["status"] == 429
    stats = sandbox.stats()
    assert stats["faults"]["429"] == len(limited) and stats["jobs_created"] == codes.count(201)
    assert stats["jobs_created"] == len(sandbox.jobs())
    time.sleep(int(limited[-1].headers["retry-after"]))
    assert api.post_job(job("RL-after")).status_code == 201
    # the token endpoint shares the bucket
    env = sandbox.env()
    form = {
        "grant_type": "client_credentials",
        "client_id": env["BIGCHANGE_CLIENT_ID"],
        "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
    }
    token_codes = [api.client.post(sandbox.token_url, data=form).status_code for _ in range(8)]
    assert 429 in token_codes


def _storm(sandbox: SandboxProcess, sandbox_api: Any, count: int = 400) -> list[int]:
    api = sandbox_api(sandbox)
    return statuses(api, "S", count)


def test_seeded_server_errors_ratios_and_determinism(sandbox_factory: Any, sandbox_api: Any) -> None:
    options = {"p500": 0.2, "p502": 0.1, "p503": 0.1, "seed": 1234, "retry_after": 3}
    first = sandbox_factory(**options)
    codes = _storm(first, sandbox_api)
    counts = Counter(codes)
    # binomial(400, p): standard deviations 8 (p=.2), 6 (p=.1); allow 4 of them
    assert abs(counts[500] - 80) <= 32 and abs(counts[502] - 40) <= 24 and abs(counts[503] - 40) <= 24, counts
    assert counts[201] == 400 - counts[500] - counts[502] - counts[503]
    stats = first.stats()
    assert stats["faults"] == {"500": counts[500], "502": counts[502], "503": counts[503]}
    assert stats["jobs_created"] == counts[201] == len(first.jobs())  # no job behind a 500/502/503

    second = sandbox_factory(**options)
    assert _storm(second, sandbox_api) == codes  # same seed, same requests: same answers
    other = sandbox_factory(**{**options, "seed": 99})
    assert _storm(other, sandbox_api) != codes
    first.reset()  # a reset reseeds
    assert _storm(first, sandbox_api) == codes


def test_gateway_answers_are_not_json(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(p502=1.0, retry_after=3)
    api = sandbox_api(sandbox)
    answer = api.post_job(job("G-1"))
    assert answer.status_code == 502 and answer.headers["content-type"].startswith("text/html")
    assert "<html>" in answer.text
    sandbox.set_faults(p502=0, p503=1.0)
    answer = api.post_job(job("G-2"))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "3"
    assert not answer.headers["content-type"].startswith("application/")
    sandbox.set_faults(p503=0, p500=1.0)
    answer = api.post_job(job("G-3"))
    assert answer.status_code == 500 and answer.json()["status"] == 500  # problem details, as documented
    assert sandbox.jobs() == []
    # faults hit POST /v1/jobs only
    assert api.get("/jobTypes").status_code == 200


def test_lost_answer_creates_the_job_and_drops_the_connection(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(p_lost=0.5, seed=5)
    api = sandbox_api(sandbox)
    lost, created = [], {}
    for n in range(40):
        reference = f"LOST-{n}"
        try:
            answer = api.post_job(job(reference))
        except httpx.RemoteProtocolError:
            lost.append(reference)
        else:
            assert answer.status_code == 201
            created[reference] = answer.json()["id"]
    assert 10 <= len(lost) <= 30, lost
    stored = {j["reference"]: j for j in sandbox.jobs()}
    assert set(stored) == set(lost) | set(created)  # every lost answer's job exists
    assert all(stored[r]["id"] == i for r, i in created.items())
    assert all(stored[r]["body"] == job(r) for r in lost)
    stats = sandbox.stats()
    assert stats["faults"] == {"lost": len(lost)} and stats["requests"]["POST /v1/jobs"]["lost"] == len(lost)
    # the look-up a client reconciles with finds them
    found = api.get("/jobs", reference=lost).json()["items"]
    assert sorted(i["reference"] for i in found) == sorted(lost)
    assert "Error" not in sandbox.output() and "Traceback" not in sandbox.output()


def test_lost_answer_of_an_invalid_body_creates_nothing(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(p_lost=1.0)
    api = sandbox_api(sandbox)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post_job({"typeId": 999, "contactId": 5001, "reference": "BAD"})
    assert sandbox.jobs() == [] and sandbox.stats()["faults"] == {"lost": 1}


def test_slow_answer_times_out_after_the_job_was_created(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(p_slow=1.0, slow_ms=600)
    api = sandbox_api(sandbox)
    api.client.timeout = httpx.Timeout(5.0, read=0.2)
    with pytest.raises(httpx.ReadTimeout):
        api.post_job(job("SLOW-1"))
    assert [j["reference"] for j in sandbox.jobs()] == ["SLOW-1"]  # created although the client gave up
    api.client.timeout = httpx.Timeout(5.0)
    start = time.monotonic()
    answer = api.post_job(job("SLOW-2"))
    assert answer.status_code == 201 and time.monotonic() - start >= 0.6
    assert sandbox.stats()["faults"] == {"slow": 2}
    time.sleep(0.5)  # the abandoned answer of SLOW-1 was written to a closed connection by now: no noise
    assert "Error" not in sandbox.output() and "Traceback" not in sandbox.output()


def test_latency_and_jitter(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory(latency_ms=80, jitter_ms=40, seed=3)
    api = sandbox_api(sandbox)
    took = []
    for n in range(6):
        start = time.monotonic()
        api.get("/jobTypes/101", "/jobTypes/{jobTypeId}") if n % 2 else api.post_job(job(f"LAT-{n}"))
        took.append(time.monotonic() - start)
    assert all(0.08 <= t < 1.5 for t in took), took
    assert max(took) - min(took) > 0.002  # jitter varies


def test_storm_then_calm_without_restart(sandbox_factory: Any, sandbox_api: Any) -> None:
    sandbox = sandbox_factory()
    api = sandbox_api(sandbox)
    settings = sandbox.set_faults(p503=1.0, seed=8)
    assert settings["p503"] == 1.0 and settings["seed"] == 8
    assert set(statuses(api, "STORM", 5)) == {503}
    sandbox.set_faults(p503=0)
    assert set(statuses(api, "CALM", 5)) == {201}
    assert sandbox.faults()["p503"] == 0
    assert sandbox.stats()["faults"] == {"503": 5}


@pytest.mark.parametrize(
    "settings",
    [
        {"p500": 1.5},
        {"p500": 0.6, "p503": 0.6},
        {"latency_ms": -1},
        {"nonsense": 1},
        {"burst": 1.5},
        {"p500": "0.1"},
        {"token_lifetime": 0},
        {"seed": "x"},
    ],
)
def test_bad_fault_settings_are_refused(sandbox: SandboxProcess, settings: dict[str, Any]) -> None:
    before = sandbox.faults()
    with pytest.raises(ValueError, match="400"):
        sandbox.set_faults(**settings)
    assert sandbox.faults() == before
