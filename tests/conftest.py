"""Shared fixtures: the local BigChange sandbox running for real on 127.0.0.1, and the OpenAPI contract.

- `sandbox` (session): a calm sandbox (no faults, no latency). Call `sandbox.reset()` yourself when a test
  needs empty counters; other tests share it, so do not change its faults: use `sandbox_factory` for that.
- `sandbox_factory(**options)`: start extra sandboxes configured with SandboxConfig / fault options
  (e.g. `sandbox_factory(p500=0.3, seed=1)`); each is stopped at the end of the test.
- `openapi_contract`: openapi.yaml loaded once; `.validate(schema_name, value)` and
  `.check(method, path_template, response)` (jsonschema 2020-12, with int32/int64/uuid formats checked).
- `sandbox_api(sandbox)`: an httpx client with a token for that sandbox; every answer it receives is
  checked against the contract before it is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipeline.sandbox.process import SandboxProcess


@pytest.fixture(autouse=True)
def _state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state home (JOBIMPORT_HOME): ledgers never leak between tests or into the user's."""
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("JOBIMPORT_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _machine_locks(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded ledger's machine-wide tenant locks go to a folder of the test's own (shared by the importers a
    test starts, never by other tests or by real runs on this machine)."""
    monkeypatch.setenv("JOBIMPORT_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


@pytest.fixture(autouse=True)
def _no_tokens_from_earlier_tests() -> None:
    """The client keeps the tokens this process was issued (by token URL): a sandbox of a later test may reuse an
    earlier one's port, and must not be sent a dead sandbox's token."""
    from pipeline.submit import client

    client._ISSUED.clear()
    client._SILENT.clear()


OPENAPI = Path(__file__).resolve().parents[1] / "pipeline" / "sandbox" / "openapi.yaml"
_BASE = "urn:bigchange-openapi"


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()
    for name, bits in (("int32", 31), ("int64", 63)):

        def in_range(value: object, bits: int = bits) -> bool:
            return not isinstance(value, int) or -(2**bits) <= value < 2**bits

        checker.checks(name)(in_range)
    return checker


class OpenApiContract:
    """openapi.yaml as jsonschema validators: bodies of schemas and of documented responses."""

    def __init__(self, path: Path = OPENAPI) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(_BASE, resource)
        self.format_checker = _format_checker()

    def validator(self, pointer: str) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(
            {"$ref": f"{_BASE}#{pointer}"}, registry=self.registry, format_checker=self.format_checker
        )

    def errors(self, schema_name: str, value: Any) -> list[str]:
        found = self.validator(f"/components/schemas/{schema_name}").iter_errors(value)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]

    def validate(self, schema_name: str, value: Any) -> None:
        problems = self.errors(schema_name, value)
        assert not problems, f"{schema_name}: {problems}"

    def _response_spec(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        operation = self.doc["paths"][path][method.lower()]
        spec = operation["responses"].get(str(status))
        if spec is not None and "$ref" in spec:
            name = spec["$ref"].rsplit("/", 1)[1]
            spec = self.doc["components"]["responses"][name]
        return spec

    def check(self, method: str, path: str, response: httpx.Response) -> Any:
        """Assert the answer matches openapi.yaml; returns its JSON body (None for non-JSON answers).

        Documented status: the body must match that response's schema under its content type. Undocumented
        status (401, 429, 502, 503...): a JSON answer must be (validation) problem details; 502/503 may be
        the non-JSON page of a gateway.
        """
        media = response.headers.get("content-type", "").split(";")[0].strip()
        spec = self._response_spec(method, path, response.status_code)
        if spec is not None and "content" in spec:
            assert media in spec["content"], f"{method} {path} {response.status_code}: content type {media!r}"
            body = response.json()
            schema = spec["content"][media]["schema"]
            pointer = schema["$ref"].split("#", 1)[1] if "$ref" in schema else None
            if pointer is None:  # an inline schema (the paged lists): validate it through the document
                responses = self.doc["paths"][path][method.lower()]["responses"]
                pointer = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}/responses/"
                pointer += f"{response.status_code}/content/{media.replace('/', '~1')}/schema"
                assert str(response.status_code) in responses
            problems = [e.message for e in self.validator(pointer).iter_errors(body)]
            assert not problems, f"{method} {path} {response.status_code}: {problems} in {body}"
            return body
        if media in ("application/json", "application/problem+json"):
            body = response.json()
            self.validate("ValidationProblemDetails" if "errors" in body else "ProblemDetails", body)
            assert body.get("status") == response.status_code, body
            return body
        assert response.status_code in (502, 503, 504), f"{method} {path}: undocumented non-JSON {response.status_code}"
        assert media in ("text/html", "text/plain"), media
        return None


class SandboxApi:
    """httpx client for one sandbox with a token; answers checked against the contract."""

    def __init__(self, sandbox: SandboxProcess, contract: OpenApiContract) -> None:
        self.sandbox = sandbox
        self.contract = contract
        self.client = httpx.Client(trust_env=False, timeout=30)
        self.headers: dict[str, str] = {"Customer-Id": sandbox.env()["BIGCHANGE_CUSTOMER_ID"]}
        self.token = self.new_token()
        self.headers["Authorization"] = f"Bearer {self.token}"

    def new_token(self) -> str:
        env = self.sandbox.env()
        answer = self.client.post(
            env["BIGCHANGE_TOKEN_URL"],
            data={
                "grant_type": "client_credentials",
                "client_id": env["BIGCHANGE_CLIENT_ID"],
                "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
            },
        )
        body = self.contract.check("POST", "/auth/tokens", answer)
        assert answer.status_code == 200, body
        return str(body["access_token"])

    def post_job(self, body: Any, *, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body, **kw}
        answer = self.client.post(f"{self.sandbox.base_url}/jobs", headers={**self.headers, **(headers or {})}, **kw)
        self.contract.check("POST", "/v1/jobs", answer)
        return answer

    def get(
        self, path: str, template: str | None = None, *, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        answer = self.client.get(
            f"{self.sandbox.base_url}{path}", params=params, headers={**self.headers, **(headers or {})}
        )
        self.contract.check("GET", "/v1" + (template or path), answer)
        return answer

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def openapi_contract() -> OpenApiContract:
    return OpenApiContract()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxProcess]]:
    started: list[SandboxProcess] = []

    def start(**options: Any) -> SandboxProcess:
        process = SandboxProcess(**options)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.__exit__(None, None, None)


@pytest.fixture
def sandbox_api(openapi_contract: OpenApiContract) -> Iterator[Callable[[SandboxProcess], SandboxApi]]:
    clients: list[SandboxApi] = []

    def connect(process: SandboxProcess) -> SandboxApi:
        api = SandboxApi(process, openapi_contract)
        clients.append(api)
        return api

    yield connect
    for api in clients:
        api.close()


# --- a real PostgreSQL server for the shared ledger ---------------------------------------------------------------


class PostgresServer:
    """A throw-away cluster: `url(dbname)` (password in the URL, scram over TCP), `admin` (a superuser URL)."""

    def __init__(self, port: int, password: str) -> None:
        self.port = port
        self.password = password

    def url(self, dbname: str = "postgres", password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{dbname}"


def _postgres_bin() -> Path | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl in a fresh folder (as `postgres` when we are root: the server refuses root), a free port,
    fsync off. Skipped with the reason when PostgreSQL is not installed — except under CI, where that fails."""
    import os
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        reason = (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl, no pg_ctl on PATH): the shared-ledger "
            "tests need it; `make test` installs Debian's postgresql package"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    as_root = getattr(os, "geteuid", lambda: -1)() == 0
    prefix: list[str] = []
    if as_root:  # the server refuses to run as root: as the postgres user Debian's package creates
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            reason = "running as root, but there is no postgres user to run the PostgreSQL server as"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
            pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="jobimport-pg-"))
    if as_root:
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(12)
    pwfile = folder / "pw"
    pwfile.write_text(password)
    if prefix:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
         "--auth=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-c fsync=off -c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
    subprocess.run(
        [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield PostgresServer(port, password)
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards): the URL, password included."""
    import uuid

    import psycopg

    name = f"ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
