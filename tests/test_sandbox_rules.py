"""Unit checks of the sandbox's pure parts: the hand-written create validation against the JobCreate schema of
openapi.yaml (hypothesis), the command line round trip, fault settings, the token bucket."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import UsageError
from pipeline.sandbox.config import SandboxConfig, add_sandbox_arguments, config_from_args, config_to_argv
from pipeline.sandbox.data import load_reference_data
from pipeline.sandbox.faults import FaultInjector, FaultSettings, TokenBucket
from pipeline.sandbox.rules import Limits, utf16_length, validate_create

DATA = load_reference_data()
LIMITS = Limits()

bmp_text = st.text(st.characters(max_codepoint=0xFFFF, codec="utf-8"), max_size=45)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


PERSON = "3e893453-fc5d-5d21-9f4a-5ba330146a90"  # a person of contact 5001
FIELDS = (
    "typeId",
    "contactId",
    "plannedDuration",
    "reference",
    "description",
    "orderNumber",
    "personId",
    "customFields",
)

custom_field = st.fixed_dictionaries(
    {"definitionId": st.sampled_from([432632, 432633])}, optional={"value": st.none() | bmp_text}
)
valid_bodies = st.fixed_dictionaries(
    {"typeId": st.just(101), "contactId": st.just(5001)},
    optional={
        "plannedDuration": st.none() | st.integers(0, 2**31 - 1),
        "reference": st.none() | bmp_text,
        "description": st.none() | bmp_text,
        "orderNumber": st.none() | bmp_text,
        "personId": st.none() | st.just(PERSON),
        "customFields": st.lists(custom_field, max_size=2, unique_by=lambda c: c["definitionId"]),
    },
)
mutation = st.tuples(st.sampled_from((*FIELDS, "extra", "customFields[0]")), st.just(None) | any_json, st.booleans())


def mutate(body: dict[str, Any], mutations: list[tuple[str, Any, bool]]) -> dict[str, Any]:
    """`body` with each (field, value, remove) applied: the field removed, or set to value. For
    "customFields[0]": the first custom field replaced by value (remove), or its definitionId set to value —
    on a fresh object when an earlier mutation left something else than an object there."""
    for name, value, remove in mutations:
        if name == "customFields[0]":
            fields = body.get("customFields")
            if isinstance(fields, list) and fields:
                first = fields[0] if isinstance(fields[0], dict) else {}
                fields[0] = value if remove else {**first, "definitionId": value}
        elif remove:
            body.pop(name, None)
        else:
            body[name] = value
    return body


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body with 0 to 2 fields replaced by any JSON value, removed, or added."""
    return mutate(draw(valid_bodies), draw(st.lists(mutation, max_size=2)))


def test_mutations_of_a_replaced_custom_field_do_not_break_the_generator() -> None:
    # the generator used to merge `{**None}` when a first mutation had replaced customFields[0] by a non-object
    body = {"typeId": 101, "contactId": 5001, "customFields": [{"definitionId": 432632}]}
    for replaced in (None, 7, "x", [1], {"value": "v"}):
        mutations = [("customFields[0]", replaced, True), ("customFields[0]", 432633, False)]
        result = mutate({**body, "customFields": [{"definitionId": 432632}]}, mutations)
        expected = {**(replaced if isinstance(replaced, dict) else {}), "definitionId": 432633}
        assert result["customFields"] == [expected]


def references_known(body: dict[str, Any]) -> bool:
    """The body names only reference data of job type 101 / contact 5001 (no business rule can refuse it)."""
    fields = body.get("customFields")
    ids = [c.get("definitionId") for c in fields if isinstance(c, dict)] if isinstance(fields, list) else []
    return (
        type(body.get("typeId")) is int
        and body["typeId"] == 101
        and type(body.get("contactId")) is int
        and body["contactId"] == 5001
        and body.get("personId") in (None, PERSON)
        and all(type(i) is int and i in (432632, 432633) for i in ids)
        and len(set(ids)) == len(ids)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_validation_agrees_with_the_schema(openapi_contract: Any, body: dict[str, Any]) -> None:
    """Whatever the spec forbids, the sandbox refuses; what the spec allows with known references passes."""
    schema_errors = openapi_contract.errors("JobCreate", body)
    errors = validate_create(body, DATA, LIMITS)
    if schema_errors:
        assert errors, (body, schema_errors)
    elif references_known(body):
        floats = any(type(v) is float for v in body.values())
        # Beyond the schema: whole floats (plannedDuration 60.0) are refused, as System.Text.Json does.
        assert not errors or floats, (body, errors)


def test_lengths_count_utf16_units() -> None:
    assert utf16_length("abc") == 3 and utf16_length("é") == 1 and utf16_length("😀") == 2
    assert validate_create({"typeId": 101, "contactId": 5001, "reference": "😀" * 20}, DATA, LIMITS) == {}
    assert list(validate_create({"typeId": 101, "contactId": 5001, "reference": "a" + "😀" * 20}, DATA, LIMITS)) == [
        "Reference"
    ]


def test_limits_are_configurable() -> None:
    body = {"typeId": 101, "contactId": 5001, "reference": "R" * 41, "description": "d" * 11}
    assert validate_create(body, DATA, Limits(reference=41, description=11)) == {}
    assert set(validate_create(body, DATA, Limits(reference=40, description=10))) == {"Reference", "Description"}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    return parser.parse_args(argv)


def test_command_line_round_trip(tmp_path: Path) -> None:
    config = SandboxConfig(
        host="127.0.0.2",
        port=0,
        data=tmp_path / "d.json",
        seed=9,
        state=tmp_path / "s.jsonl",
        first_id=7,
        max_reference=50,
        latency_ms=5.5,
        jitter_ms=2,
        rate_limit=100,
        burst=20,
        p500=0.1,
        p502=0.05,
        p503=0.05,
        p_lost=0.01,
        p_slow=0.02,
        slow_ms=900,
        retry_after=4,
        token_lifetime=60,
    )
    rebuilt = config_from_args(_parse(config_to_argv(config)))
    assert rebuilt == config.resolved({})  # credentials from the (here empty) environment: documented defaults
    assert rebuilt.client_id == "sandbox-client" and rebuilt.customer_id == 1001


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGCHANGE_CUSTOMER_ID", "77")
    monkeypatch.setenv("BIGCHANGE_CLIENT_SECRET", "from-env")
    config = config_from_args(_parse([]))
    assert (config.port, config.customer_id, config.client_id) == (8765, 77, "sandbox-client")
    assert config.client_secret is not None and config.client_secret.reveal() == "from-env"
    assert "from-env" not in repr(config)
    with pytest.raises(UsageError, match="p_slow is a probability"):
        config_from_args(_parse(["--p-slow", "-0.1"]))


def test_fault_settings_update() -> None:
    settings_ = FaultSettings().updated({"p500": 0.5, "burst": 3, "latency_ms": 1})
    assert (settings_.p500, settings_.burst, settings_.latency_ms) == (0.5, 3, 1.0)
    assert isinstance(settings_.burst, int) and isinstance(settings_.latency_ms, float)
    for bad in ({"p500": True}, {"burst": 2.5}, {"rate": 1}, {"p500": 0.5, "p_slow": 0.6}):
        with pytest.raises(ValueError):
            FaultSettings().updated(bad)


def test_fault_draws_follow_the_seed() -> None:
    def draws(seed: int) -> list[str]:
        injector = FaultInjector(FaultSettings(p500=0.3, p_lost=0.3), seed)
        return [injector.draw().value for _ in range(50)]

    assert draws(1) == draws(1) != draws(2)
    assert set(draws(1)) == {"500", "lost", "none"}


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, capacity=2)
    assert bucket.take() is None and bucket.take() is None
    assert bucket.take() == 1  # whole seconds, at least 1
    time.sleep(0.12)
    assert bucket.take() is None
    assert TokenBucket(rate=0.1, capacity=1).take() is None
    slow = TokenBucket(rate=0.1, capacity=1)
    slow.take()
    assert slow.take() == 10
