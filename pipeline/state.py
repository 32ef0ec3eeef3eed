"""Where jobimport keeps what must outlive a run: one folder per tenant identity in the user's state home.

A tenant identity is the API a run talks to (its base URL, normalised by RFC 3986 without DNS: see
`normalise_api`; `localhost` and `127.0.0.1` are two APIs) plus the customer id.
The ledger, the reference-data cache and the record of dropped files of one identity live in
`<home>/tenants/<slug>/`, whatever the working directory or `--report-dir`: a rehearsal against the sandbox
and the real run never share one. The home is `--state-dir`, else `JOBIMPORT_HOME`, else the platform's user
state folder (platformdirs: `~/.local/state/jobimport` on Linux, `%LOCALAPPDATA%\\jobimport` on Windows).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

HOME_VARIABLE = "JOBIMPORT_HOME"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_api(base_url: str) -> str:
    """The API a ledger belongs to, by RFC 3986's normalisation (section 6.2.2) and without DNS: scheme and host
    in lower case, an internationalised host in its IDNA (punycode) form, a trailing dot and the default port
    dropped, percent-encodings of unreserved characters decoded and the others in upper case, dot-segments
    removed, empty path segments and a trailing slash dropped; user-info, query and fragment are no part of it.
    `HTTPS://Api.Example.com:443/v1/./x/../` → `https://api.example.com/v1`."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = _percent(parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    elif not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{_path(parts.path)}"


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _percent(text: str) -> str:
    """Percent-encodings normalised: unreserved characters decoded, the rest with upper-case hex digits."""

    def one(found: re.Match[str]) -> str:
        char = chr(int(found.group(1), 16))
        return char if char in _UNRESERVED else "%" + found.group(1).upper()

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def _path(path: str) -> str:
    """RFC 3986 remove_dot_segments, with empty segments (`//`) and a trailing slash dropped too."""
    kept: list[str] = []
    for segment in _percent(path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    return "".join("/" + segment for segment in kept)


@dataclass(frozen=True, slots=True)
class TenantIdentity:
    """The API (normalised base URL) and the customer id: what a ledger and a reference-data cache belong to."""

    api: str
    customer_id: int

    @classmethod
    def of(cls, base_url: str, customer_id: int) -> TenantIdentity:
        return cls(normalise_api(base_url), int(customer_id))

    def __str__(self) -> str:
        return f"{self.api} (customer {self.customer_id})"

    @property
    def slug(self) -> str:
        """A readable, file-name-safe folder name, unique per identity (a short hash settles any collision)."""
        readable = re.sub(r"[^A-Za-z0-9.]+", "_", self.api.split("://", 1)[-1]).strip("_")
        digest = hashlib.sha256(f"{self.api}\n{self.customer_id}".encode()).hexdigest()[:8]
        return f"{readable[:60]}-c{self.customer_id}-{digest}"

    def to_json(self) -> str:
        return json.dumps({"api": self.api, "customer_id": self.customer_id})

    @classmethod
    def from_json(cls, text: str) -> TenantIdentity:
        data = json.loads(text)
        return cls(str(data["api"]), int(data["customer_id"]))


def state_home(explicit: Path | None = None) -> Path:
    """`--state-dir`, else $JOBIMPORT_HOME, else the user's state folder. Not created here."""
    if explicit is not None:
        return explicit.expanduser().resolve()
    from_env = os.environ.get(HOME_VARIABLE, "").strip()
    if from_env:
        return Path(from_env).expanduser().resolve()
    return platformdirs.user_state_path("jobimport", appauthor=False)


def tenant_dir(identity: TenantIdentity, home: Path | None = None) -> Path:
    """The folder that holds everything kept for one tenant identity (not created here)."""
    return state_home(home) / "tenants" / identity.slug


def default_ledger_path(identity: TenantIdentity, home: Path | None = None) -> Path:
    return tenant_dir(identity, home) / "ledger.sqlite"


def known_ledgers(home: Path | None = None) -> list[Path]:
    """Every tenant's ledger in the state home, for `status` and `report`."""
    root = state_home(home) / "tenants"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/ledger.sqlite") if p.is_file())
