"""A ledger that stops accepting writes in the middle of a real import (against the sandbox): the run stops with
exit 3 and one line naming the ledger and what to do, the reports are still written from the row tracker, and
results.csv says which rows' outcomes may be missing from the ledger. (Defect 1 of the engine before the tracker:
no reports at all, and a message that wrapped itself.)"""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from jobfiles import latest_run, results, summary, write_jobs

from pipeline import cli
from pipeline.run import runner
from pipeline.submit.ledger import SqliteLedger
from pipeline.submit.tracker import MAYBE_NOT_RECORDED


class DiskFullLedger(SqliteLedger):
    """The tenant's real ledger, whose writes fail from the 8th on, as on a disk that just filled up."""

    writes = 0

    def _write(self, jobs: list[Any]) -> Future[None]:
        if jobs:
            DiskFullLedger.writes += 1
            if DiskFullLedger.writes >= 8:
                failed: Future[None] = Future()
                failed.set_exception(sqlite3.OperationalError("database or disk is full"))
                return failed
        return super()._write(jobs)


def test_a_ledger_that_fills_up_mid_run_stops_it_with_reports(
    tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = sandbox_factory(latency_ms=20)
    source = write_jobs(tmp_path / "in", 400, prefix="FULL", without_reference=lambda i: i % 3 == 0)
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runner, "Ledger", DiskFullLedger)
    reports = tmp_path / "reports"
    code = cli.main(
        ["run", str(source), "--mapping", str(source.parent / "mapping.toml"), "--report-dir", str(reports)]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    stop_lines = [line for line in err.splitlines() if "cannot write the ledger" in line]
    assert len(stop_lines) == 1 and stop_lines[0].count("cannot write the ledger") == 1, err
    assert "database or disk is full" in stop_lines[0] and "ledger.sqlite" in stop_lines[0]
    assert "Traceback" not in err
    run_dir = latest_run(reports)
    assert summary(run_dir)["exit_code"] == 3
    table = results(run_dir)
    assert table.height == 400
    notes = table["note"].to_list()
    assert MAYBE_NOT_RECORDED in notes
    created = {job["body"]["description"] for job in sandbox.jobs()}
    status = dict(zip(table["Notes"].to_list(), table["status"].to_list(), strict=True))
    assert all(status[d] in ("created", "uncertain") for d in created), "a job the sandbox created reported otherwise"
