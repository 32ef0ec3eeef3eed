"""Connection settings from the environment (and an optional .env-style file), never from a mapping file.

The same variables configure the sandbox (which credentials and tenant it accepts) and the importer, so one
environment serves both ends of a rehearsal. Secrets are wrapped so that they never print.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from dotenv import dotenv_values

from pipeline.errors import SettingsError

SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765
SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"
SANDBOX_CUSTOMER_ID = 1001

VARIABLES = (
    "BIGCHANGE_BASE_URL",
    "BIGCHANGE_TOKEN_URL",
    "BIGCHANGE_CLIENT_ID",
    "BIGCHANGE_CLIENT_SECRET",
    "BIGCHANGE_CUSTOMER_ID",
)


class Secret:
    """A string that shows as '***' in str(), repr(), logs and tracebacks. `.reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    base_url: str  # e.g. https://api.bigchange.com/v1 (paths /jobs, /jobTypes... are appended)
    token_url: str  # e.g. https://api.bigchange.com/auth/tokens
    client_id: str
    client_secret: Secret
    customer_id: int
    #: the most a connect (TCP and TLS) may take; `with_timeout` bounds it by the command's --timeout
    connect_timeout_s: float = 10.0

    def with_timeout(self, timeout_s: float) -> Settings:
        """These settings with connects bounded by `timeout_s` too (--timeout: a silent host costs no more)."""
        return replace(self, connect_timeout_s=min(self.connect_timeout_s, timeout_s))


class _ParseProblems(logging.Handler):
    """Collects python-dotenv's "could not parse statement starting at line N" warnings (it skips such lines)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"line (\d+)", record.getMessage())
        self.lines.append(int(found.group(1)) if found else 0)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env-style file with python-dotenv: KEY=VALUE lines, `#` comments (also after an unquoted value:
    `ID=abc # note` is `abc`), quotes, `export `. Values are taken literally (no `${VAR}` expansion: a secret may
    contain `$`). A line it cannot parse, or a key without `=`, is a one-line SettingsError naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror or exc}; check the path") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"cannot read settings file {path}: not UTF-8 ({exc.reason}); save it as UTF-8") from None
    problems = _ParseProblems()
    logger = logging.getLogger("dotenv")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(problems)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # its warning is our one-line error, not an extra line on stderr
    try:
        parsed = dotenv_values(stream=io.StringIO(text), interpolate=False)
    finally:
        logger.removeHandler(problems)
        logger.setLevel(level)
        logger.propagate = propagate
    if problems.lines:
        raise SettingsError(f"{path}, line {problems.lines[0]}: expected KEY=VALUE; fix or remove that line")
    for key, value in parsed.items():
        if value is None:
            raise SettingsError(f"{path}: {key} has no '=' and no value; write {key}=VALUE or remove that line")
    return {key: value for key, value in parsed.items() if value is not None}


def _environment(env_file: Path | None, environ: Mapping[str, str] | None) -> dict[str, str]:
    values = dict(os.environ if environ is None else environ)
    if env_file is not None:
        # The process environment wins over the file, like most .env loaders.
        file_values = read_env_file(env_file)
        values = {**file_values, **values}
    return values


def sandbox_base_url(host: str = SANDBOX_HOST, port: int = SANDBOX_PORT) -> str:
    return f"http://{host}:{port}/v1"


def default_token_url(base_url: str) -> str:
    """The token endpoint beside the API: https://host/v1 → https://host/auth/tokens."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/auth/tokens"


def _customer_id(raw: str, source: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(
            f"{source} must be a whole number (the BigChange customer id), got {raw!r}; fix the setting"
        ) from None
    if value <= 0:
        raise SettingsError(f"{source} must be a positive customer id, got {value}; fix the setting")
    return value


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: query parameter names that carry a credential (matched anywhere in the name, any case)
_CREDENTIAL_PARAM = re.compile(r"secret|passw|pwd|token|key|auth|signature|^sig$|credential|session|^code$", re.I)


def shown_url(url: str) -> str:
    """`url` as it may be shown anywhere (console, logs, reports, messages): scheme, host, port and path only —
    never user-info, query or fragment, where credentials hide."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "(a URL that cannot be parsed)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}{parts.path}"


def _check_no_secret(name: str, url: str) -> None:
    """A URL is shown in logs and reports (redacted) and kept in the ledger's identity: a credential inside it
    is refused, naming where it belongs. The value itself is never echoed."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise SettingsError(f"{name} is not a valid URL (scheme://host[:port]/path); fix the setting") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise SettingsError(
            f"{name} holds a user name or password before the host (user:…@); credentials belong in "
            "BIGCHANGE_CLIENT_ID and BIGCHANGE_CLIENT_SECRET: remove them from the URL"
        )
    for key, _value in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_PARAM.search(key):
            raise SettingsError(
                f"{name} has a query parameter '{re.sub(r'[^ -~]', '?', key)[:40]}' that looks like a credential; the "
                "client secret belongs in BIGCHANGE_CLIENT_SECRET (URLs are shown in logs and reports): remove it "
                "from the URL"
            )


def _check_url(name: str, url: str) -> None:
    """https, or plain http only to this machine: credentials and tokens must not cross a network in clear."""
    _check_no_secret(name, url)
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS):
        return
    if parts.scheme == "http":
        raise SettingsError(
            f"{name} uses plain http to {parts.hostname}: credentials would travel unencrypted; use https://"
        )
    raise SettingsError(f"{name} must start with https:// (or http:// to this machine), got {shown_url(url)!r}")


def load_settings(env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for the importer. Every variable is required except the token URL (derived from the base)."""
    values = _environment(env_file, environ)
    missing = [name for name in VARIABLES if name != "BIGCHANGE_TOKEN_URL" and not values.get(name, "").strip()]
    if missing:
        raise SettingsError(
            "missing settings: "
            + ", ".join(missing)
            + "; set them in the environment or in a file given with --env-file (see README, 'Settings')"
        )
    base_url = values["BIGCHANGE_BASE_URL"].strip().rstrip("/")
    _check_no_secret("BIGCHANGE_BASE_URL", base_url)
    if urlsplit(base_url).query or urlsplit(base_url).fragment:
        raise SettingsError(
            "BIGCHANGE_BASE_URL has a query or fragment (after ? or #); give the API's base only, e.g. "
            "https://api.bigchange.com/v1 (paths such as /jobs are appended to it)"
        )
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise SettingsError(
            f"BIGCHANGE_BASE_URL must start with https:// (or http:// locally), got {shown_url(base_url)!r}"
        )
    token_url = values.get("BIGCHANGE_TOKEN_URL", "").strip() or default_token_url(base_url)
    _check_url("BIGCHANGE_BASE_URL", base_url)
    _check_url("BIGCHANGE_TOKEN_URL", token_url)
    return Settings(
        base_url=base_url,
        token_url=token_url,
        client_id=values["BIGCHANGE_CLIENT_ID"].strip(),
        client_secret=Secret(values["BIGCHANGE_CLIENT_SECRET"].strip()),
        customer_id=_customer_id(values["BIGCHANGE_CUSTOMER_ID"], "BIGCHANGE_CUSTOMER_ID"),
    )


def sandbox_settings(
    host: str = SANDBOX_HOST,
    port: int = SANDBOX_PORT,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """What the sandbox accepts: the same variables as the importer, with documented defaults when unset."""
    values = _environment(env_file, environ)
    customer = values.get("BIGCHANGE_CUSTOMER_ID", "").strip()
    base = sandbox_base_url(host, port)
    return Settings(
        base_url=base,
        token_url=default_token_url(base),
        client_id=values.get("BIGCHANGE_CLIENT_ID", "").strip() or SANDBOX_CLIENT_ID,
        client_secret=Secret(values.get("BIGCHANGE_CLIENT_SECRET", "").strip() or SANDBOX_CLIENT_SECRET),
        customer_id=_customer_id(customer, "BIGCHANGE_CUSTOMER_ID") if customer else SANDBOX_CUSTOMER_ID,
    )
