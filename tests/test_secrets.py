"""Secrets never show: credentials inside a URL are refused (exit 2, one line saying where they belong), URLs are
shown redacted to scheme, host, port and path, and a matrix of failures run with a distinctive secret leaves it in
no output and no file written (reports, logs, ledger, reference-data cache, drop log, filed notes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jobfiles import run_cli, write_jobs

from pipeline.errors import SettingsError
from pipeline.settings import Secret, load_settings, shown_url

SECRET = "ZQ-7f3a9c-DO-NOT-LEAK-e41b"


def settings_env(**overrides: str) -> dict[str, str]:
    return {
        "BIGCHANGE_BASE_URL": "https://api.example.com/v1",
        "BIGCHANGE_CLIENT_ID": "client",
        "BIGCHANGE_CLIENT_SECRET": SECRET,
        "BIGCHANGE_CUSTOMER_ID": "1001",
        **overrides,
    }


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        ("BIGCHANGE_BASE_URL", f"https://client:{SECRET}@api.example.com/v1", "user name or password"),
        ("BIGCHANGE_BASE_URL", f"https://{SECRET}@api.example.com/v1", "user name or password"),
        ("BIGCHANGE_TOKEN_URL", f"https://api.example.com/auth/tokens?client_secret={SECRET}", "'client_secret'"),
        ("BIGCHANGE_TOKEN_URL", f"https://api.example.com/auth/tokens?x=1&api_key={SECRET}", "'api_key'"),
        ("BIGCHANGE_TOKEN_URL", f"https://api.example.com/auth/tokens?access_token={SECRET}", "'access_token'"),
        ("BIGCHANGE_TOKEN_URL", f"https://api.example.com/auth/tokens?Password={SECRET}", "'Password'"),
        ("BIGCHANGE_TOKEN_URL", f"ftp://u:{SECRET}@api.example.com/t", "user name or password"),
        ("BIGCHANGE_BASE_URL", f"https://api.example.com/v1?sig={SECRET}", "'sig'"),
        ("BIGCHANGE_BASE_URL", "https://api.example.com/v1?tenant=4", "has a query or fragment"),
    ],
)
def test_a_credential_inside_a_url_is_refused_saying_where_it_belongs(variable: str, url: str, expected: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ=settings_env(**{variable: url}))
    message = str(refused.value)
    assert message.startswith(variable) and expected in message and "\n" not in message
    assert SECRET not in message
    if "query or fragment" not in message:
        assert "BIGCHANGE_CLIENT" in message  # where the secret belongs


def test_a_harmless_query_on_the_token_url_is_kept_and_shown_urls_are_redacted() -> None:
    settings = load_settings(environ=settings_env(BIGCHANGE_TOKEN_URL="https://login.example.com/t?api-version=2"))
    assert settings.token_url.endswith("?api-version=2")
    assert shown_url("https://u:p@Host.example.com:8443/a/b?token=x#f") == "https://host.example.com:8443/a/b"
    assert shown_url(settings.token_url) == "https://login.example.com/t"


class _Token(BaseHTTPRequestHandler):
    """A token endpoint gone wrong: `mode` is 500, garbage (200 that is not JSON), echo (401 repeating the form
    it was sent, as title and body)."""

    def do_POST(self) -> None:
        form = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "500":
            status, body, kind = 500, b'{"title": "Internal Server Error"}', "application/problem+json"
        elif mode == "garbage":
            status, body, kind = 200, b"\x00\xff<html>not a token\x1b[2J", "text/html"
        else:
            status, body, kind = (
                401,
                json.dumps({"title": form.decode(), "detail": form.decode()}).encode(),
                "application/json",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Token)
    server.mode = "500"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/auth/tokens"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a TLS handshake waits forever)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


def _hits(folder: Path, *outputs: str) -> list[str]:
    """Where SECRET shows: every file under `folder` (as bytes: SQLite, xlsx and JSON alike) and each output."""
    found = [f"output {i}" for i, text in enumerate(outputs) if SECRET in text]
    for path in folder.rglob("*"):
        if path.is_file() and SECRET.encode() in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


MATRIX_TABLE: list[tuple[str, int, int]] = []


def test_a_matrix_of_failures_with_a_distinctive_secret_leaves_it_nowhere(
    tmp_path: Path, sandbox_factory: Any, token_server: Any, silent_port: int
) -> None:
    good = sandbox_factory(client_secret=Secret(SECRET))  # (accepts SECRET)
    other = sandbox_factory()  # accepts its default secret only: SECRET is the wrong one
    flaky = sandbox_factory(client_secret=Secret(SECRET), p500=0.5, p502=0.5, seed=7)
    cases: list[tuple[str, dict[str, str], list[str], int]] = [
        ("wrong secret (401 from the token endpoint)", {**other.env(), "BIGCHANGE_CLIENT_SECRET": SECRET}, [], 3),
        ("DNS failure", settings_env(BIGCHANGE_BASE_URL="https://no-such-host.invalid/v1"), [], 3),
        ("500 from the token endpoint", {**good.env(), "BIGCHANGE_TOKEN_URL": token_server.url}, ["500"], 3),
        (
            "garbage 200 from the token endpoint",
            {**good.env(), "BIGCHANGE_TOKEN_URL": token_server.url},
            ["garbage"],
            3,
        ),
        ("401 echoing the secret back", {**good.env(), "BIGCHANGE_TOKEN_URL": token_server.url}, ["echo"], 3),
        ("TLS port that never answers", settings_env(BIGCHANGE_BASE_URL=f"https://127.0.0.1:{silent_port}/v1"), [], 3),
        ("500 and 502 (HTML) from the jobs endpoint", flaky.env(), ["--max-attempts", "2"], 1),
        (
            "client_secret in the token URL",
            {**good.env(), "BIGCHANGE_TOKEN_URL": f"{good.token_url}?client_secret={SECRET}"},
            [],
            2,
        ),
        (
            "user:secret@ in the base URL",
            {**good.env(), "BIGCHANGE_BASE_URL": good.base_url.replace("//", f"//u:{SECRET}@")},
            [],
            2,
        ),
        ("the right secret (a clean run)", good.env(), [], 0),
    ]
    for i, (case, env, extra, expected) in enumerate(cases):
        folder = tmp_path / f"case{i}"
        jobs = write_jobs(folder, 4, prefix=f"SEC{i}")
        mode = [m for m in extra if m in ("500", "garbage", "echo")]
        if mode:
            token_server.mode = mode[0]
        args = [a for a in extra if a not in mode]
        env = {**env, "JOBIMPORT_HOME": str(folder / "home")}
        done = run_cli(
            [
                "run",
                str(jobs),
                "--mapping",
                str(folder / "mapping.toml"),
                "--report-dir",
                str(folder / "reports"),
                "--timeout",
                "2",
                *args,
            ],
            env=env,
            cwd=folder,
            timeout=120,
        )
        assert done.returncode == expected, (case, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, case
        if expected in (2, 3):
            assert len([line for line in done.stderr.splitlines() if line.startswith("jobimport:")]) >= 1
        hits = _hits(folder, done.stdout, done.stderr)
        MATRIX_TABLE.append((case, done.returncode, len(hits)))
        assert hits == [], (case, hits)
    print("\n| failure | exit | files and outputs holding the secret |\n|---|---|---|")
    for case, code, hits in MATRIX_TABLE:
        print(f"| {case} | {code} | {hits} |")
