"""Settings from the environment: required variables, secrets never shown, no credentials over plain http."""

from __future__ import annotations

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import load_settings

BASE = {
    "BIGCHANGE_BASE_URL": "https://api.bigchange.com/v1",
    "BIGCHANGE_CLIENT_ID": "id",
    "BIGCHANGE_CLIENT_SECRET": "very-secret",
    "BIGCHANGE_CUSTOMER_ID": "1001",
}


def test_token_url_is_derived_and_the_secret_never_shows() -> None:
    settings = load_settings(environ=BASE)
    assert settings.token_url == "https://api.bigchange.com/auth/tokens"
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings)


@pytest.mark.parametrize(
    ("name", "url"),
    [("BIGCHANGE_BASE_URL", "http://api.bigchange.com/v1"), ("BIGCHANGE_TOKEN_URL", "http://10.1.2.3/auth/tokens")],
)
def test_plain_http_only_to_this_machine(name: str, url: str) -> None:
    with pytest.raises(SettingsError, match="unencrypted"):
        load_settings(environ={**BASE, name: url})
    local = load_settings(environ={**BASE, "BIGCHANGE_BASE_URL": "http://127.0.0.1:8765/v1"})
    assert local.token_url == "http://127.0.0.1:8765/auth/tokens"


def test_missing_variables_are_named() -> None:
    with pytest.raises(SettingsError, match="BIGCHANGE_CLIENT_SECRET, BIGCHANGE_CUSTOMER_ID"):
        load_settings(environ={"BIGCHANGE_BASE_URL": BASE["BIGCHANGE_BASE_URL"], "BIGCHANGE_CLIENT_ID": "id"})
