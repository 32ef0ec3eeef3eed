"""Helpers for the Dagster tests and the orchestrator benchmark: tenants files pointing at a sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_tenants(
    root: Path,
    sandbox: Any,
    customers: list[int],
    mapping: Path,
    *,
    settle_s: float = 0.0,
    interval_s: int = 1,
    extra: dict[int, dict[str, Any]] | None = None,
    local_ledger: bool = True,
) -> Path:
    """tenants.toml with tenant `c<ID>` per customer: folder root/drops/c<ID>, an env file without the secret
    (root/env/c<ID>.env), the secret in the variable JOBIMPORT_TEST_SECRET (the orchestrator's EnvVar)."""
    lines = ["[defaults]", f"settle_s = {settle_s}", f"interval_s = {interval_s}", "retry_wait_s = 0"]
    lines.append(f"local_ledger = {'true' if local_ledger else 'false'}")
    for customer in customers:
        env = sandbox.env(customer)
        env_file = root / "env" / f"c{customer}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in env.items() if k != "BIGCHANGE_CLIENT_SECRET"), encoding="utf-8"
        )
        (root / "drops" / f"c{customer}").mkdir(parents=True, exist_ok=True)
        lines += [
            "",
            "[[tenant]]",
            f'name = "c{customer}"',
            f"folder = '{(root / 'drops' / f'c{customer}').as_posix()}'",
            f"mapping = '{mapping.as_posix()}'",
            f"env_file = '{env_file.as_posix()}'",
            'env = { BIGCHANGE_CLIENT_SECRET = "JOBIMPORT_TEST_SECRET" }',
        ]
        for key, value in ((extra or {}).get(customer) or {}).items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            else:
                lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    path = root / "tenants.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
