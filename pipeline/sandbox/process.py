"""A handle on a sandbox server running as a subprocess (`sys.executable -m pipeline.sandbox`), for tests, the
demo and benchmarks. Standard library only.

    with SandboxProcess(p500=0.1, seed=7) as sandbox:      # port 0: a free port, read from the ready line
        env = sandbox.env()                                 # BIGCHANGE_* variables pointing at it
        ...
        sandbox.stats()["jobs_created"]

Credentials and tenant travel to the server in its environment (never on its command line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.errors import JobImportError
from pipeline.sandbox.config import SandboxConfig, config_to_argv

_READY = re.compile(r"BigChange sandbox listening on (http://\S+)")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


class SandboxStartError(JobImportError):
    """The sandbox subprocess did not start (bad option, port taken, crash); the message has its last words."""


class SandboxProcess:
    """Start a sandbox subprocess on entry, stop it on exit (terminate, then kill)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
        **options: Any,
    ) -> None:
        """`config` and/or keyword options named like SandboxConfig fields (port defaults to 0 here).
        `environ` adds variables to the child's environment (the parent's environment is inherited)."""
        base = config if config is not None else SandboxConfig(port=0)
        for key in ("data", "state"):
            if isinstance(options.get(key), str):
                options[key] = Path(options[key])
        self._child_env = {**os.environ, **(environ or {})}
        self.config = dataclasses.replace(base, **options).resolved(self._child_env)
        self.config.check()
        self.startup_timeout = startup_timeout
        self.root_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._output = ""
        self.returncode: int | None = None  # exit code of the last stopped server

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> SandboxProcess:
        config = self.config
        assert config.client_id is not None and config.client_secret is not None
        env = dict(self._child_env)
        env.update(
            BIGCHANGE_CLIENT_ID=config.client_id,
            BIGCHANGE_CLIENT_SECRET=config.client_secret.reveal(),
            BIGCHANGE_CUSTOMER_ID=str(config.customer_id),
            PYTHONPATH=os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p),
        )
        if self._log is not None:  # a restart: the previous run's output is replaced
            Path(self._log.name).unlink(missing_ok=True)
        self._log = tempfile.NamedTemporaryFile(prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.sandbox", *config_to_argv(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            output = self.output()
            match = _READY.search(output)
            if match:
                self.root_url = match.group(1)
                break
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                output = self.output()
                last = " | ".join(line for line in output.strip().splitlines()[-3:]) or "no output"
                raise SandboxStartError(f"the sandbox did not start: {last}")
            time.sleep(0.02)
        self._request("GET", "/_sandbox/health")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None:
            self.returncode = process.returncode
        if self._log is not None:
            self._log.close()

    def restart(self) -> SandboxProcess:
        """Stop and start again on the same port (same state file, if any): URLs stay valid."""
        port = int(self.root_url.rsplit(":", 1)[1]) if self.root_url else self.config.port
        self.stop()
        self.config = dataclasses.replace(self.config, port=port)
        return self.start()

    def output(self) -> str:
        """Everything the server printed so far (the ready line, warnings, errors)."""
        if self._log is not None and Path(self._log.name).exists():
            self._output = Path(self._log.name).read_text(encoding="utf-8", errors="replace")
        return self._output

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._log is not None:
            self.output()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    # --- where it is ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/auth/tokens"

    def env(self, customer_id: int | None = None) -> dict[str, str]:
        """BIGCHANGE_* variables that point an importer at this sandbox with credentials it accepts (at tenant
        `customer_id`, one of `--customers`; default: the first)."""
        config = self.config
        assert config.client_id is not None and config.client_secret is not None
        return {
            "BIGCHANGE_BASE_URL": self.base_url,
            "BIGCHANGE_TOKEN_URL": self.token_url,
            "BIGCHANGE_CLIENT_ID": config.client_id,
            "BIGCHANGE_CLIENT_SECRET": config.client_secret.reveal(),
            "BIGCHANGE_CUSTOMER_ID": str(customer_id if customer_id is not None else config.customer_id),
        }

    # --- inspection and control (/_sandbox) -------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        """Call a /_sandbox endpoint; a refusal raises ValueError with the status and the answer."""
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(
            self.root_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=30) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            raise ValueError(f"sandbox {method} {path}: {exc.code} {detail}") from None

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/_sandbox/stats")

    def jobs(self, *references: str, customer_id: int | None = None) -> list[dict[str, Any]]:
        """Every created job (id, reference, typeId, contactId, status, createdAt, body), or those references
        (of tenant `customer_id` when the sandbox hosts several; default: the first)."""
        parts = ["reference=" + urllib.parse.quote(r, safe="") for r in references]
        if customer_id is not None:
            parts.append(f"customer={customer_id}")
        query = "&".join(parts)
        return self._request("GET", "/_sandbox/jobs" + (f"?{query}" if query else ""))["jobs"]

    def faults(self) -> dict[str, Any]:
        return self._request("GET", "/_sandbox/faults")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change fault settings at run time (names of FaultSettings, plus seed). Returns them all."""
        return self._request("POST", "/_sandbox/faults", settings)

    def reset(self) -> dict[str, Any]:
        """Forget jobs and counters (ids keep growing), reseed the fault generator."""
        return self._request("POST", "/_sandbox/reset")
