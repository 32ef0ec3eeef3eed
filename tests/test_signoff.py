"""`jobimport status FILE`: one sign-off per original file across the correction rounds, and which API each run
went to — real commands against the sandbox on 127.0.0.1, real corrections workbooks edited with openpyxl."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import openpyxl
from drops import HEADER
from jobfiles import latest_run, run_cli, write_jobs

from pipeline.signoff import corrected_run


def _fix_corrections(workbook: Path, target: Path, column: str, value: str) -> None:
    """What an analyst does: open the corrections workbook, fix one column, drop status/errors, sort, save as."""
    book = openpyxl.load_workbook(workbook)
    sheet = book.active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    col = header.index(column) + 1
    for row in range(2, sheet.max_row + 1):
        sheet.cell(row=row, column=col, value=value)
    for name in ("errors", "status"):
        sheet.delete_cols(header.index(name) + 1)
        header.remove(name)
    book.save(target)


def test_one_sign_off_per_file_across_rounds(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 6: after the correction rounds, rerunning the original still said `already_created,
    invalid`, exit 1. `status FILE` gives every original row's final outcome and one verdict."""
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    jobs = write_jobs(tmp_path / "in", 6, prefix="SIGN", bad={1: {"Type": "abc"}, 4: {"Type": "x"}})
    mapping = jobs.parent / "mapping.toml"
    reports = tmp_path / "reports"

    first = run_cli(["run", jobs, "-m", mapping, "--report-dir", reports], env, tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"to sandbox {sandbox.base_url.rstrip('/')}, customer" in first.stdout
    round1 = latest_run(reports)
    assert corrected_run(round1 / "corrections.xlsx") == round1.name

    status = run_cli(["status", jobs, "--report-dir", reports], env, tmp_path)
    assert status.returncode == 1 and status.stdout.splitlines()[-2] == "2 of 6 rows need attention", status.stdout

    fixed = tmp_path / "elsewhere" / "my fixes.xlsx"  # renamed, moved, columns removed: the link survives
    fixed.parent.mkdir()
    _fix_corrections(round1 / "corrections.xlsx", fixed, "Type", "101")
    assert corrected_run(fixed) == round1.name
    second = run_cli(["run", fixed, "-m", mapping, "--report-dir", reports], env, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    round2 = latest_run(reports)
    with (round2 / "results.csv").open(encoding="utf-8-sig") as handle:
        header, *body = list(csv.reader(handle))
    assert header.count("row") == 1 and header[:2] == ["row", "file_row"]  # finding 4: `row` alone keeps the link
    assert sorted(int(r[0]) for r in body) == [3, 6]
    assert json.loads((round2 / "summary.json").read_text(encoding="utf-8"))["corrects_run"] == round1.name

    again = run_cli(["run", jobs, "-m", mapping, "--report-dir", reports], env, tmp_path)
    assert again.returncode == 1  # the original still has its two bad cells

    for start in (jobs, fixed):
        signed = run_cli(["status", start, "--report-dir", reports], env, tmp_path)
        print(signed.stdout)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        lines = signed.stdout.splitlines()
        assert lines[0].startswith(f"{jobs.resolve()}: 3 rounds")
        assert lines[-2] == "done: all 6 rows of jobs.csv are in BigChange"
        assert lines[-1].startswith("signoff: ") and lines[-1].endswith("signoff.csv")
        rows = [line.split() for line in lines[2:-2]]
        assert [int(r[0]) for r in rows] == [2, 3, 4, 5, 6, 7]
        assert {r[1] for r in rows} == {"created"}
    latest = latest_run(reports)
    with (latest / "signoff.csv").open(encoding="utf-8-sig") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["row", "status", "job_id", "run_id", "input", "message"]
    assert [r[1] for r in table[1:7]] == ["created"] * 6
    assert table[-1] == ["verdict", "done: all 6 rows of jobs.csv are in BigChange"]
    page = (latest / "summary.html").read_text(encoding="utf-8")
    assert "Sign-off of the original file" in page and "done: all 6 rows of jobs.csv are in BigChange" in page

    summary = json.loads((latest / "summary.json").read_text(encoding="utf-8"))
    assert summary["api"] == sandbox.base_url.rstrip("/") and "sandbox " in page


def test_which_api_is_in_status(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 3: status, summary.json/html and the console name the API; the sandbox is 'sandbox'."""
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    jobs = write_jobs(tmp_path / "in", 2, prefix="API")
    done = run_cli(["run", jobs, "-m", jobs.parent / "mapping.toml", "--report-dir", tmp_path / "r"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    status = run_cli(["status", "--report-dir", tmp_path / "r"], env, tmp_path)
    print(status.stdout)
    header, row = status.stdout.splitlines()[:2]
    assert "target" in header
    assert f"sandbox {sandbox.base_url.rstrip('/').split('://')[1]} #" in row


def test_a_corrections_file_without_its_row_column_says_so(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 4: without the `row` column the link is gone: a one-line warning says so."""
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    jobs = write_jobs(tmp_path / "in", 3, prefix="NOROW", bad={1: {"Type": "abc"}})
    mapping = jobs.parent / "mapping.toml"
    first = run_cli(["run", jobs, "-m", mapping, "--report-dir", tmp_path / "r"], env, tmp_path)
    assert first.returncode == 1
    round1 = latest_run(tmp_path / "r")
    book = openpyxl.load_workbook(round1 / "corrections.xlsx")
    sheet = book.active
    assert sheet is not None
    sheet.delete_cols(len(HEADER) + 1, 3)
    sheet.cell(row=2, column=2, value="101")
    trimmed = tmp_path / "trimmed.xlsx"
    book.save(trimmed)
    done = run_cli(["run", trimmed, "-m", mapping, "--report-dir", tmp_path / "r"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stderr.splitlines() if "warning" in line] == [
        f"jobimport: warning: trimmed.xlsx is a corrections file of run {round1.name} without its 'row' column: "
        "results point at the rows of this file, not the original's; put the column back to keep the link"
    ]


def test_drop_moves_an_attention_file_to_done_when_its_corrections_close_it(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 6 (drop mode): attention/jobs.csv stayed after its corrections were imported."""
    from datetime import date

    from drops import by_name, drop, drop_env, mapping_file, tree

    today = date.today().isoformat()
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    source = write_jobs(tmp_path / "in", 4, prefix="CLOSE", bad={0: {"Type": "abc"}, 2: {"Type": "x"}})
    folder.mkdir()
    (folder / "jobs.csv").write_bytes(source.read_bytes())
    first = drop(folder, mapping, env=env, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    companion = folder / "attention" / today / "jobs.corrections.xlsx"
    assert companion.is_file()

    _fix_corrections(companion, folder / "jobs.corrections.xlsx", "Type", "101")
    second = drop(folder, mapping, env=env, cwd=tmp_path)
    print(second.stdout)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (
        f"jobs.csv: its last open rows were imported (from jobs.corrections.xlsx): attention/{today}/jobs.csv -> "
        f"done/{today}/jobs.csv; done: all 4 rows of jobs.csv are in BigChange"
    ) in second.stdout
    assert by_name(folder)["jobs.corrections.xlsx"]["outcome"] == "done"
    files = tree(folder)
    assert not [f for f in files if f.startswith("attention/")], files
    assert f"done/{today}/jobs.csv" in files and f"done/{today}/jobs.corrections.xlsx" in files


def test_runs_that_never_started_leave_nothing_and_are_hidden(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 7: a wrong base path (404) or refused credentials stop a run before its first request."""
    home = tmp_path / "home"
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(home)}
    jobs = write_jobs(tmp_path / "in", 3, prefix="NEVER")
    mapping = jobs.parent / "mapping.toml"
    reports = tmp_path / "r"
    wrong = {**env, "BIGCHANGE_BASE_URL": sandbox.base_url.rstrip("/") + "/wrong"}
    stopped = run_cli(["run", jobs, "-m", mapping, "--report-dir", reports], wrong, tmp_path)
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert not (home / "tenants").exists() or not list((home / "tenants").iterdir())

    good = run_cli(["run", jobs, "-m", mapping, "--report-dir", reports], env, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    refused = {**env, "BIGCHANGE_CLIENT_SECRET": "not-the-secret"}
    other = write_jobs(tmp_path / "in2", 3, prefix="NEVER2")
    again = run_cli(["run", other, "-m", mapping, "--report-dir", reports], refused, tmp_path)
    assert again.returncode == 3, again.stdout + again.stderr
    assert len(list((home / "tenants").iterdir())) == 1

    status = run_cli(["status", "--report-dir", reports], env, tmp_path)
    print(status.stdout)
    lines = status.stdout.splitlines()
    assert len(lines) == 3 and "3 created" in lines[1]
    assert lines[2] == "(1 run that never started (stopped before the first request) not shown: --all)"
    everything = run_cli(["status", "--all", "--report-dir", reports], env, tmp_path)
    print(everything.stdout)
    assert "never started (3 pending)" in everything.stdout.splitlines()[1]
