"""The local BigChange API sandbox: a real HTTP server (aiohttp) speaking openapi.yaml, with fault injection,
for demos, rehearsals, integration tests and benchmarks.

Entry points: `python -m pipeline.sandbox`, and for the main CLI `add_sandbox_arguments`, `config_from_args`,
`serve`; for tests, the demo and benchmarks `SandboxProcess` (a subprocess handle).
"""

from __future__ import annotations

from pipeline.sandbox.config import SandboxConfig, add_sandbox_arguments, config_from_args
from pipeline.sandbox.process import SandboxProcess, SandboxStartError


def serve(config: SandboxConfig) -> None:
    """Blocking: run a sandbox server in the foreground until Ctrl-C (imports aiohttp only when called)."""
    from pipeline.sandbox.server import serve as _serve

    _serve(config)


__all__ = ["SandboxConfig", "SandboxProcess", "SandboxStartError", "add_sandbox_arguments", "config_from_args", "serve"]
