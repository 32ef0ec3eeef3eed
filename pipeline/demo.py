"""`jobimport demo`: start the sandbox in the background, import the bundled sample workbook, stop the sandbox.

The workbook and its mapping are package data (`pipeline/demo_data/`, copies of `samples/jobs.xlsx` and
`mappings/jobs_xlsx.toml` written by `samples/make_samples.py`), so an installed wheel runs the demo from any folder.

The sandbox keeps its jobs in REPORT_DIR/sandbox-state.jsonl and listens on port 8765 when it is free, and the demo's
state home (its tenant's ledger) is REPORT_DIR/state, apart from the user's real ledgers: running the demo twice
shows what a rerun does: every row created the first time is `already_created`, nothing is sent twice.
Light faults (a few 503s and lost answers) are on, so the demo also shows retries and reconciliation.
"""

from __future__ import annotations

import socket
import sys
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from pipeline.errors import InputFileError
from pipeline.run import RunOptions, RunResult, run_import
from pipeline.sandbox.process import SandboxProcess
from pipeline.settings import SANDBOX_HOST, SANDBOX_PORT, load_settings
from pipeline.submit import SubmitOptions

DEMO_DATA = files("pipeline").joinpath("demo_data")
SAMPLE = DEMO_DATA.joinpath("jobs.xlsx")
MAPPING = DEMO_DATA.joinpath("jobs_xlsx.toml")
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
    for resource in (SAMPLE, MAPPING):
        if not resource.is_file():
            raise InputFileError(
                f"the demo needs pipeline/demo_data/{resource.name}, which is missing from the installed package; "
                "reinstall jobimport"
            )
    report_root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        sample = stack.enter_context(as_file(SAMPLE))  # real files (the package may be in a zip)
        mapping = stack.enter_context(as_file(MAPPING))
        sandbox = stack.enter_context(
            SandboxProcess(state=report_root / "sandbox-state.jsonl", port=_demo_port(), **DEMO_FAULTS)
        )
        print(f"sandbox running at {sandbox.base_url} (faults: {DEMO_FAULTS})")
        settings = load_settings(environ=sandbox.env())
        print(f"importing {sample} with {mapping}")
        result = run_import(
            RunOptions(
                input=sample,
                mapping=mapping,
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
