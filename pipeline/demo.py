"""`jobimport demo`: start the sandbox in the background, import the bundled sample workbook, stop the sandbox.

The sandbox keeps its jobs in REPORT_DIR/sandbox-state.jsonl and the ledger lives beside it, so running the demo
twice shows what a rerun does: every row created the first time is `already_created`, nothing is sent twice.
Light faults (a few 503s and lost answers) are on, so the demo also shows retries and reconciliation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import InputFileError
from pipeline.runner import RunOptions, RunResult, run_import
from pipeline.sandbox.process import SandboxProcess
from pipeline.settings import load_settings
from pipeline.submit import SubmitOptions

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "jobs.xlsx"
MAPPING = ROOT / "mappings" / "jobs_xlsx.toml"
DEMO_FAULTS: dict[str, Any] = {"latency_ms": 25.0, "jitter_ms": 15.0, "p503": 0.03, "p_lost": 0.03, "seed": 7}


def run_demo(report_root: Path) -> RunResult:
    for path in (SAMPLE, MAPPING):
        if not path.exists():
            raise InputFileError(f"the demo needs {path}, which is missing; restore it from git")
    report_root.mkdir(parents=True, exist_ok=True)
    with SandboxProcess(state=report_root / "sandbox-state.jsonl", **DEMO_FAULTS) as sandbox:
        print(f"sandbox running at {sandbox.base_url} (faults: {DEMO_FAULTS})")
        settings = load_settings(environ=sandbox.env())
        print(f"importing {SAMPLE.relative_to(ROOT)} with {MAPPING.relative_to(ROOT)}")
        result = run_import(
            RunOptions(
                input=SAMPLE,
                mapping=MAPPING,
                report_root=report_root,
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
