"""Settings from the environment and .env files: required variables, secrets never shown, no credentials over plain
http, .env syntax as python-dotenv reads it with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import load_settings, read_env_file

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


# --- .env files (python-dotenv) ---------------------------------------------------------------------------------


def env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobimport.env"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_file_comments_quotes_export_and_literal_dollars(tmp_path: Path) -> None:
    path = env_file(
        tmp_path,
        "# connection to the sandbox\n"
        "export BIGCHANGE_BASE_URL=https://api.bigchange.com/v1   # the API\n"
        "BIGCHANGE_CLIENT_ID=abc # note\n"
        "BIGCHANGE_CLIENT_SECRET='s3cr#t ${NOT_EXPANDED} $x'\n"
        'BIGCHANGE_CUSTOMER_ID="1001"\n'
        "\n",
    )
    assert read_env_file(path) == {
        "BIGCHANGE_BASE_URL": "https://api.bigchange.com/v1",
        "BIGCHANGE_CLIENT_ID": "abc",
        "BIGCHANGE_CLIENT_SECRET": "s3cr#t ${NOT_EXPANDED} $x",
        "BIGCHANGE_CUSTOMER_ID": "1001",
    }
    settings = load_settings(env_file=path, environ={"BIGCHANGE_CUSTOMER_ID": "2002"})  # the environment wins
    assert (settings.client_id, settings.client_secret.reveal(), settings.customer_id) == (
        "abc",
        "s3cr#t ${NOT_EXPANDED} $x",
        2002,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\n'unclosed = 2\nB=3\n", r"jobimport\.env, line 2: expected KEY=VALUE; fix or remove that line$"),
        ("A=1\nJUST_A_KEY\n", r"jobimport\.env: JUST_A_KEY has no '=' and no value; write JUST_A_KEY=VALUE or remove"),
    ],
)
def test_env_file_errors_are_one_line_and_name_the_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        read_env_file(env_file(tmp_path, text))
    assert "\n" not in str(caught.value)
    assert capfd.readouterr().err == ""  # python-dotenv's own warning is not printed as well


def test_env_file_unreadable_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read settings file .*missing\.env"):
        read_env_file(tmp_path / "missing.env")
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"BIGCHANGE_CLIENT_ID=caf\xe9\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        read_env_file(latin)


def test_jobimport_variables_in_an_env_file_count_like_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy/env.example sets JOBIMPORT_HOME in the file handed over with --env-file: the ledger must be there,
    not in the user's state folder; the real environment still wins."""
    from pipeline.cli import main

    for name in ("JOBIMPORT_HOME", "JOBIMPORT_NOTIFY_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "state-from-file"
    env_file = tmp_path / "nightly.env"
    env_file.write_text(
        "BIGCHANGE_BASE_URL=http://127.0.0.1:8765/v1\nBIGCHANGE_CLIENT_ID=c\nBIGCHANGE_CLIENT_SECRET=s\n"
        f"BIGCHANGE_CUSTOMER_ID=1001\nJOBIMPORT_HOME={home}\n",
        encoding="utf-8",
    )
    assert main(["ledger", "path", "--env-file", str(env_file)]) == 0
    assert str(home) in capsys.readouterr().out

    elsewhere = tmp_path / "state-from-environment"
    monkeypatch.setenv("JOBIMPORT_HOME", str(elsewhere))
    assert main(["ledger", "path", "--env-file", str(env_file)]) == 0
    shown = capsys.readouterr().out
    assert str(elsewhere) in shown and str(home) not in shown
