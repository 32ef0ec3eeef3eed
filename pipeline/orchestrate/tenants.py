"""The tenants file an orchestrator's definitions are built from (TOML; paths relative to the file):

    [defaults]                   # any tenant key, for every tenant
    interval_s = 30

    [[tenant]]
    name = "acme"                                  # letters, digits, _ : names the sensor and the job
    folder = "/srv/drops/acme"                     # the drop folder
    mapping = "/etc/jobimport/acme.toml"           # or routes = ["jobs_*.csv=…/legacy.toml", "…/jobs.toml"]
    env_file = "/etc/jobimport/acme.env"           # BIGCHANGE_BASE_URL, BIGCHANGE_CUSTOMER_ID… (no secret needed)
    env = { BIGCHANGE_CLIENT_SECRET = "ACME_CLIENT_SECRET" }   # setting → the orchestrator's variable holding it
    ledger_url = "postgresql://jobimport@db/jobimport"          # the tenant's shared ledger
    interval_s = 30                                # seconds between looks at the folder

Secrets are never written in this file: `env` names the environment variables the orchestrator resolves when a
run starts (Dagster: `EnvVar`), so they stay out of run configuration, storage and logs. Only the BIGCHANGE_*
settings come from `env_file` and `env`, never from the process environment, so tenants cannot leak into each
other. `local_ledger = true` lets runs that execute outside the orchestrator's own process use the tenant's
SQLite ledger in the state home: right only when every run executes on this one machine.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.drop import Route
from pipeline.errors import UsageError
from pipeline.settings import VARIABLES

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
_KEYS = {
    "name",
    "folder",
    "mapping",
    "routes",
    "env_file",
    "env",
    "ledger_url",
    "local_ledger",
    "interval_s",
    "settle_s",
    "ready_marker",
    "report_dir",
    "state_dir",
    "max_concurrency",
    "max_attempts",
    "timeout_s",
    "api_retries",
    "retry_wait_s",
}


@dataclass(frozen=True)
class TenantConfig:
    name: str
    folder: Path
    routes: list[Route]
    env_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # BIGCHANGE_* setting → name of the variable holding it
    ledger_url: str | None = None
    local_ledger: bool = False
    interval_s: int = 30
    settle_s: float = 60.0
    ready_marker: str | None = None
    report_dir: Path | None = None  # default FOLDER/reports
    state_dir: Path | None = None  # default $JOBIMPORT_HOME of the worker
    max_concurrency: int = 32
    max_attempts: int = 6
    timeout_s: float = 30.0
    api_retries: int = 5  # runs of a file stopped because the API is down, before the run fails
    retry_wait_s: float = 300.0  # seconds between them


def load_tenants(path: Path) -> list[TenantConfig]:
    """Every tenant of the file. Raises UsageError (one line naming the file, the tenant and the key)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the tenants file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a TOML file ({exc}); fix it") from None
    base = path.resolve().parent
    defaults = document.get("defaults", {})
    entries = document.get("tenant", [])
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: no [[tenant]] table; add one per tenant (name, folder, mapping, env_file…)")
    tenants = [_tenant({**defaults, **entry}, base, f"{path}, tenant {i + 1}") for i, entry in enumerate(entries)]
    names = [t.name for t in tenants]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"{path}: two tenants are named {name!r}; names must be unique")
    return tenants


def _tenant(entry: dict[str, Any], base: Path, where: str) -> TenantConfig:
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}")
    name = str(entry.get("name", ""))
    if not _NAME.match(name):
        raise UsageError(f"{where}: name {name!r} must be letters, digits and _ (starting with a letter)")
    where = f"{where} ({name})"

    def path_of(key: str) -> Path | None:
        value = entry.get(key)
        return None if value is None else (base / str(value)).resolve()

    if "folder" not in entry:
        raise UsageError(f"{where}: folder is missing (the tenant's drop folder)")
    if ("mapping" in entry) == ("routes" in entry):
        raise UsageError(f"{where}: give either mapping = FILE or routes = ['PATTERN=FILE', …]")
    texts = [str(entry["mapping"])] if "mapping" in entry else [str(r) for r in entry["routes"]]
    routes = []
    for text in texts:
        route = Route.parse(text)
        routes.append(Route(route.pattern, (base / route.mapping).resolve()))
    env = {str(k): str(v) for k, v in dict(entry.get("env", {})).items()}
    for key in env:
        if key not in VARIABLES:
            raise UsageError(f"{where}: env key {key!r} is not a setting; use one of {', '.join(VARIABLES)}")
    ledger_url = entry.get("ledger_url")
    if ledger_url is not None and not str(ledger_url).startswith(("postgresql://", "postgres://")):
        raise UsageError(f"{where}: ledger_url must be a postgresql:// URL (the tenant's shared ledger)")
    folder = path_of("folder")
    assert folder is not None
    return TenantConfig(
        name=name,
        folder=folder,
        routes=routes,
        env_file=path_of("env_file"),
        env=env,
        ledger_url=str(ledger_url) if ledger_url is not None else None,
        local_ledger=bool(entry.get("local_ledger", False)),
        interval_s=int(entry.get("interval_s", 30)),
        settle_s=float(entry.get("settle_s", 60.0)),
        ready_marker=entry.get("ready_marker"),
        report_dir=path_of("report_dir"),
        state_dir=path_of("state_dir"),
        max_concurrency=int(entry.get("max_concurrency", 32)),
        max_attempts=int(entry.get("max_attempts", 6)),
        timeout_s=float(entry.get("timeout_s", 30.0)),
        api_retries=int(entry.get("api_retries", 5)),
        retry_wait_s=float(entry.get("retry_wait_s", 300.0)),
    )
