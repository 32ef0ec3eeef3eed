"""`jobimport demo`: start the sandbox in the background, import the bundled sample workbook, stop the sandbox.

The sandbox keeps its jobs in REPORT_DIR/sandbox-state.jsonl and listens on port 8765 when it is free, and the demo's
state home (its tenant's ledger) is REPORT_DIR/state, apart from the user's real ledgers: running the demo twice
shows what a rerun does: every row created the first time is `already_created`, nothing is sent twice.
Light faults (a few 503s and lost answers) are on, so the demo also shows retries and reconciliation.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import InputFileError
from pipeline.runner import RunOptions, RunResult, run_import
from pipeline.sandbox.process import SandboxProcess
from pipeline.settings import SANDBOX_HOST, SANDBOX_PORT, load_settings
from pipeline.submit import SubmitOptions

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "jobs.xlsx"
MAPPING = ROOT / "mappings" / "jobs_xlsx.toml"
DEMO_FAULTS: dict[str, Any] = {"latency_ms": 25.0, "jitter_ms": 15.0, "p503": 0.03, "p_lost": 0.03, "seed": 7}


def _demo_port() -> int:
    """The sandbox's usual port when it is free (the same API, so the same ledger, on every demo run), else any."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if hasattr(socket, "SO_REUSEADDR") and sys.platform != "win32":  # as the server binds (TIME_WAIT is free)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((SANDBOX_HOST, SANDBOX_PORT))
        except OSError:
            return 0
    return SANDBOX_PORT


def run_demo(report_root: Path) -> RunResult:
    for path in (SAMPLE, MAPPING):
        if not path.exists():
            raise InputFileError(f"the demo needs {path}, which is missing; restore it from git")
    report_root.mkdir(parents=True, exist_ok=True)
    port = _demo_port()
    with SandboxProcess(state=report_root / "sandbox-state.jsonl", port=port, **DEMO_FAULTS) as sandbox:
        print(f"sandbox running at {sandbox.base_url} (faults: {DEMO_FAULTS})")
        settings = load_settings(environ=sandbox.env())
        print(f"importing {SAMPLE.relative_to(ROOT)} with {MAPPING.relative_to(ROOT)}")
        result = run_import(
            RunOptions(
                input=SAMPLE,
                mapping=MAPPING,
                report_root=report_root,
                state_dir=report_root / "state",
                settings=settings,
                submit=SubmitOptions(max_concurrency=16),
            )
        )
        stats = sandbox.stats()
        duplicates = stats.get("duplicates") or []
        print(
            f"sandbox: {stats.get('jobs_created', '?')} jobs created by this demo, {stats.get('jobs_stored', '?')} "
            f"stored in all; references created more than once: {len(duplicates)}"
        )
        print("(the sample has mistakes on purpose: the invalid and rejected rows are in corrections.xlsx)")
    return result
