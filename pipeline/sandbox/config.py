"""Configuration of the sandbox server and its command line (shared by `python -m pipeline.sandbox` and
`jobimport sandbox`).

Accepted credentials and tenant are not options: they come from the same BIGCHANGE_* variables as the
importer's (`pipeline.settings.sandbox_settings()`), so one environment serves both ends of a rehearsal.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.sandbox.faults import FaultSettings
from pipeline.settings import SANDBOX_HOST, SANDBOX_PORT, Secret, sandbox_settings

_DEFAULTS = FaultSettings()


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox server needs. Fault fields have the same names as FaultSettings."""

    host: str = SANDBOX_HOST
    port: int = SANDBOX_PORT  # 0 = any free port (reported on the ready line)
    data: Path | None = None  # reference data JSON; None = the package's (a copy: samples/sandbox_data.json)
    seed: int | None = None
    state: Path | None = None  # created jobs persisted here (JSON lines) and reloaded on start
    first_id: int = 10_000_001
    max_reference: int = 40
    max_description: int = 500
    max_custom_value: int = 500
    latency_ms: float = _DEFAULTS.latency_ms
    jitter_ms: float = _DEFAULTS.jitter_ms
    rate_limit: float = _DEFAULTS.rate_limit
    burst: int = _DEFAULTS.burst
    p500: float = _DEFAULTS.p500
    p502: float = _DEFAULTS.p502
    p503: float = _DEFAULTS.p503
    p_lost: float = _DEFAULTS.p_lost
    p_slow: float = _DEFAULTS.p_slow
    slow_ms: float = _DEFAULTS.slow_ms
    retry_after: int = _DEFAULTS.retry_after
    token_lifetime: int = _DEFAULTS.token_lifetime
    # None = from the environment (BIGCHANGE_CLIENT_ID, BIGCHANGE_CLIENT_SECRET, BIGCHANGE_CUSTOMER_ID)
    client_id: str | None = None
    client_secret: Secret | None = None
    customer_id: int | None = None
    # Several tenants on one server (`--customers 1001,1002`): each its own jobs and its own copy of the reference
    # data, all reached with the same credentials; the Customer-Id header picks one. Empty: customer_id alone.
    customers: tuple[int, ...] = ()

    def tenants(self) -> tuple[int, ...]:
        """The customer ids this server hosts (the first is the one `customer_id` names by default)."""
        if self.customers:
            return self.customers
        return (self.customer_id,) if self.customer_id is not None else ()

    def faults(self) -> FaultSettings:
        return FaultSettings(**{f.name: getattr(self, f.name) for f in fields(FaultSettings)})

    def resolved(self, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """A copy with the credentials and tenant filled from the environment where they are None."""
        if self.client_id is not None and self.client_secret is not None and self.customer_id is not None:
            return self
        settings = sandbox_settings(self.host, self.port, environ=environ)
        default_customer = self.customers[0] if self.customers else settings.customer_id
        return replace(
            self,
            client_id=self.client_id if self.client_id is not None else settings.client_id,
            client_secret=self.client_secret if self.client_secret is not None else settings.client_secret,
            customer_id=self.customer_id if self.customer_id is not None else default_customer,
        )

    def check(self) -> None:
        """Raise UsageError (one line) when a value is out of range."""
        try:
            self.faults().check()
        except ValueError as exc:
            raise UsageError(f"sandbox: {exc}; fix the option") from None
        if not 0 <= self.port <= 65535:
            raise UsageError(f"sandbox: --port must be between 0 and 65535, got {self.port}")
        for name in ("max_reference", "max_description", "max_custom_value", "first_id"):
            if getattr(self, name) < 1:
                raise UsageError(f"sandbox: {name} must be >= 1, got {getattr(self, name)}")
        if any(c < 1 for c in self.customers) or len(set(self.customers)) != len(self.customers):
            raise UsageError(f"sandbox: --customers must be distinct positive ids, got {self.customers}")


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to a parser (the main CLI's `sandbox` subcommand reuses this)."""
    d = SandboxConfig()
    net = parser.add_argument_group("server")
    net.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    net.add_argument("--port", type=int, default=d.port, help=f"port; 0 picks a free one (default {d.port})")
    net.add_argument("--data", type=Path, help="reference data JSON (job types, contacts, persons)")
    net.add_argument("--state", type=Path, help="keep created jobs in this file across restarts (JSON lines)")
    net.add_argument(
        "--customers",
        type=_customer_list,
        default=(),
        metavar="ID,ID,…",
        help="host several tenants (e.g. 1001,1002,1003), each with its own jobs and reference data; the same "
        "credentials reach every one, the Customer-Id header picks it (default: BIGCHANGE_CUSTOMER_ID alone)",
    )
    net.add_argument("--first-id", type=int, default=d.first_id, help="id of the first job created")
    net.add_argument("--max-reference", type=int, default=d.max_reference, help="reference max length")
    net.add_argument("--max-description", type=int, default=d.max_description, help="description max length")
    net.add_argument("--max-custom-value", type=int, default=d.max_custom_value, help="custom value max length")
    fault = parser.add_argument_group("fault injection (faults apply to POST /v1/jobs; latency and rate limit to all)")
    fault.add_argument("--seed", type=int, help="seed of the fault generator (same seed, same faults)")
    fault.add_argument("--latency-ms", type=float, default=d.latency_ms, help="added to every API answer")
    fault.add_argument("--jitter-ms", type=float, default=d.jitter_ms, help="plus a uniform random 0..jitter")
    fault.add_argument("--rate-limit", type=float, default=d.rate_limit, help="requests/s before 429 (0 = off)")
    fault.add_argument("--burst", type=int, default=d.burst, help="token bucket size (default: the rate)")
    fault.add_argument("--p500", type=float, default=d.p500, help="probability of a 500 (nothing created)")
    fault.add_argument("--p502", type=float, default=d.p502, help="probability of a gateway 502 (HTML)")
    fault.add_argument("--p503", type=float, default=d.p503, help="probability of a 503 with Retry-After")
    fault.add_argument("--p-lost", type=float, default=d.p_lost, help="probability: job created, connection dropped")
    fault.add_argument("--p-slow", type=float, default=d.p_slow, help="probability: job created, answer delayed")
    fault.add_argument("--slow-ms", type=float, default=d.slow_ms, help="delay of a slow answer")
    fault.add_argument("--retry-after", type=int, default=d.retry_after, help="Retry-After seconds of a 503")
    fault.add_argument("--token-lifetime", type=int, default=d.token_lifetime, help="seconds a token lives")


def _customer_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected customer ids separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one customer id")
    return values


def config_from_args(ns: argparse.Namespace) -> SandboxConfig:
    """The config of parsed arguments, credentials and tenant from the environment. Raises UsageError."""
    names = {f.name for f in fields(SandboxConfig)} - {"client_id", "client_secret", "customer_id"}
    config = SandboxConfig(**{name: getattr(ns, name) for name in names if hasattr(ns, name)})
    config.check()
    return config.resolved()


def config_to_argv(config: SandboxConfig) -> list[str]:
    """Command line options that rebuild `config` (credentials excluded: they travel in the environment)."""
    argv: list[str] = []
    default = SandboxConfig()
    for f in fields(SandboxConfig):
        if f.name in ("client_id", "client_secret", "customer_id"):
            continue
        value = getattr(config, f.name)
        if value is None or (value == getattr(default, f.name) and f.name != "port"):
            continue
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        argv += ["--" + f.name.replace("_", "-"), str(value)]
    return argv
