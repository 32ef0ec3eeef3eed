"""End-to-end: `jobimport run` against the sandbox running for real on 127.0.0.1, through its faults.

Every scenario ends with each valid row created exactly once (the sandbox's creation count per reference),
the ids in results.csv equal to the sandbox's, and one terminal status per row.
Runs use --no-preflight: the submit stage (and the sandbox's 422s) is what they exercise.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from jobfiles import (
    assert_created_exactly_once,
    latest_run,
    results,
    run_cli,
    start_cli,
    summary,
    write_jobs,
)


def _run_args(source: Path, reports: Path) -> list[str]:
    """`jobimport run` of a file written by write_jobs, with its mapping, reports in `reports`."""
    return [
        "run",
        str(source),
        "--no-preflight",
        "--mapping",
        str(source.parent / "mapping.toml"),
        "--report-dir",
        str(reports),
    ]


def _import(tmp_path: Path, sandbox: Any, rows: int, extra: list[str] | None = None, **kw: Any) -> Path:
    source = write_jobs(tmp_path / "in", rows, **kw)
    reports = tmp_path / "reports"
    done = run_cli(
        _run_args(source, reports) + (extra or []),
        sandbox.env(),
        tmp_path,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), (done.returncode, done.stdout, done.stderr)
    return latest_run(reports)


def _check_all_created(run_dir: Path, sandbox: Any, rows: int) -> None:
    table = results(run_dir)
    assert table.height == rows
    assert set(table["status"].to_list()) <= {"created", "already_created"}, table["status"].value_counts()
    ids = assert_created_exactly_once(sandbox, table["reference"].to_list())
    for reference, job_id in zip(table["reference"].to_list(), table["job_id"].to_list(), strict=True):
        assert int(job_id) == ids[reference]


def test_calm_import_ids_match_sandbox_and_422_carries_field_errors(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    bad = {3: {"Customer": "999999"}, 7: {"Type": "102"}}  # unknown contact; type 102 needs an order number
    run_dir = _import(tmp_path, sandbox, 60, bad=bad)
    table = results(run_dir)
    assert summary(run_dir)["exit_code"] == 1
    rejected = table.filter(table["status"] == "rejected")
    assert rejected["row"].to_list() == ["5", "9"]  # header is row 1
    contact = rejected.row(0, named=True)
    assert contact["problem_status"] == "422"
    assert "Customer:" in contact["errors"]  # ContactId mapped back to the column that fed it
    assert "OrderNumber" in rejected.row(1, named=True)["errors"]  # no column feeds it: row-level, key kept
    created = table.filter(table["status"] == "created")
    ids = assert_created_exactly_once(sandbox, created["reference"].to_list())
    assert sorted(int(i) for i in created["job_id"].to_list()) == sorted(ids.values())


def test_rerun_sends_nothing_already_created_and_unchanged_rejections(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    bad = {2: {"Customer": "999999"}}
    _import(tmp_path, sandbox, 30, bad=bad)
    posts_before = sandbox.stats()["requests"]["POST /v1/jobs"]
    run_dir = _import(tmp_path, sandbox, 30, bad=bad)
    table = results(run_dir)
    assert table["status"].value_counts().sort("status").rows() == [("already_created", 29), ("rejected", 1)]
    assert sandbox.stats()["requests"]["POST /v1/jobs"] == posts_before  # not one request sent


@pytest.mark.parametrize(
    ("name", "faults"),
    [
        ("429 storm", {"rate_limit": 60, "burst": 5}),
        ("500 and 502 html", {"p500": 0.15, "p502": 0.15, "seed": 11}),
        ("lost answers", {"p_lost": 0.2, "seed": 5}),
        ("503 with retry-after", {"p503": 0.2, "retry_after": 0, "seed": 3}),
        ("token expires mid-run", {"token_lifetime": 1, "latency_ms": 20}),
        ("slow answers beyond the read timeout", {"p_slow": 0.1, "slow_ms": 3000, "seed": 9}),
    ],
)
def test_faults_end_with_every_row_created_exactly_once(
    tmp_path: Path, sandbox_factory: Any, name: str, faults: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(**faults)
    rows = 200
    extra = ["--max-attempts", "10"]
    if name.startswith("slow"):
        extra += ["--timeout", "1"]
    if name.startswith("token"):
        extra += ["--max-concurrency", "2"]  # long enough for the 1 s token to expire several times
    run_dir = _import(tmp_path, sandbox, rows, extra=extra)
    _check_all_created(run_dir, sandbox, rows)
    stats = sandbox.stats()
    info = summary(run_dir)
    if name == "429 storm":
        assert stats["faults"].get("429", 0) > 0 and info["http_429"] > 0
    if name in ("lost answers", "slow answers beyond the read timeout"):
        assert info["reconciled"] > 0
    if name == "token expires mid-run":
        assert stats["tokens_issued"] >= 2


@pytest.mark.parametrize("lose_ledger", [False, True], ids=["ledger kept", "ledger deleted after the kills"])
def test_killed_twice_then_rerun_creates_each_job_once(tmp_path: Path, sandbox_factory: Any, lose_ledger: bool) -> None:
    """SIGKILL twice mid-run, then reruns: every reference created once, even when the ledger is lost between the
    second kill and the rerun (the look-up by reference before sending finds what was created)."""
    sandbox = sandbox_factory(latency_ms=5, p_lost=0.02, p503=0.02, retry_after=0, seed=21)
    rows = 3000
    source = write_jobs(tmp_path / "in", rows, prefix="KILL")
    reports = tmp_path / "reports"
    args = _run_args(source, reports)
    args += ["--timeout", "3"]  # a rerun right after a kill waits this long before looking rows up
    for threshold in (600, 1800):
        process = start_cli(args, sandbox.env(), tmp_path)
        deadline = time.monotonic() + 120
        while sandbox.stats()["jobs_created"] < threshold:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "import too slow to reach the kill point"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    if lose_ledger:
        state = Path(os.environ["JOBIMPORT_HOME"]) / "tenants"
        lost = list(state.glob("*/ledger.sqlite*"))
        assert lost, "the killed runs kept a ledger in the state home"
        for path in lost:
            path.unlink()
    for _ in range(4):
        done = run_cli(args, sandbox.env(), tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:
            break
    assert done.returncode == 0, (done.stdout, done.stderr)
    _check_all_created(latest_run(reports), sandbox, rows)


def test_sigint_stops_with_exit_3_and_reports_then_rerun_finishes(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(latency_ms=20)
    rows = 2000
    source = write_jobs(tmp_path / "in", rows, prefix="INT")
    reports = tmp_path / "reports"
    args = _run_args(source, reports)
    args += ["--max-concurrency", "4"]
    process = start_cli(args, sandbox.env(), tmp_path)
    deadline = time.monotonic() + 60
    while sandbox.stats()["jobs_created"] < 100:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, (out, err)
    assert "Traceback" not in err
    run_dir = latest_run(reports)
    info = summary(run_dir)
    assert "interrupted by SIGINT" in (info["stop_reason"] or "")
    # first hour: the last progress line does not claim every row is done when most were never sent
    last = [line for line in err.splitlines() if line.startswith("progress:")][-1]
    done_rows = int(last.split()[1].split("/")[0])
    assert done_rows < rows and "(not sent)" in last, last
    table = results(run_dir)
    assert table.height == rows
    statuses = dict(table["status"].value_counts().rows())
    assert statuses.get("pending", 0) > 0 and statuses.get("created", 0) >= 100
    assert set(statuses) <= {"created", "pending", "uncertain"}
    pending = table.filter(table["status"] == "pending")
    assert all("run the same command again" in e for e in pending["errors"].to_list())  # corrections say what to do
    done = run_cli(args, sandbox.env(), tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    _check_all_created(latest_run(reports), sandbox, rows)


def test_secrets_appear_in_no_log_report_or_message(tmp_path: Path, sandbox_factory: Any) -> None:
    canary = "s3cret-CANARY-7f3a9b"
    sandbox = sandbox_factory(environ={"BIGCHANGE_CLIENT_SECRET": canary}, p500=0.1, p_lost=0.1, seed=2)
    env = sandbox.env()
    assert env["BIGCHANGE_CLIENT_SECRET"] == canary
    source = write_jobs(tmp_path / "in", 50, bad={1: {"Customer": "999999"}})
    reports = tmp_path / "reports"
    args = _run_args(source, reports)
    done = run_cli(args, env, tmp_path)
    # a fresh ledger: rows to look up and send, a token to ask for
    args_fresh = [*args[:-1], str(tmp_path / "reports-wrong"), "--ledger", str(tmp_path / "fresh.sqlite")]
    wrong = run_cli(args_fresh, {**env, "BIGCHANGE_CLIENT_SECRET": canary + "-wrong"}, tmp_path)
    assert wrong.returncode == 3 and "refused the client credentials" in wrong.stderr
    texts = [done.stdout, done.stderr, wrong.stdout, wrong.stderr]
    files = [p for folder in (reports, tmp_path / "reports-wrong") for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "run.log.jsonl" for p in files)
    texts += [p.read_bytes().decode("utf-8", "replace") for p in files]
    for text in texts:
        assert canary not in text
        assert "Bearer " not in text and "access_token" not in text


def test_wrong_tenant_stops_as_configuration_problem_and_rerun_sends(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 5)
    reports = tmp_path / "reports"
    args = _run_args(source, reports)
    args += ["--ledger", str(tmp_path / "ledger.sqlite")]
    wrong = run_cli(args, {**sandbox.env(), "BIGCHANGE_CUSTOMER_ID": "4242"}, tmp_path)
    assert wrong.returncode == 3, (wrong.stdout, wrong.stderr)
    assert "answered 403" in wrong.stderr and "BIGCHANGE_CUSTOMER_ID" in wrong.stderr
    # first hour: the last progress line agrees with the counts (the 403s were taken back as pending)
    last = [line for line in wrong.stderr.splitlines() if line.startswith("progress:")][-1]
    assert "pending 5 (not sent)" in last and "rejected" not in last, last
    assert set(results(latest_run(reports))["status"].to_list()) == {"pending"}
    right = run_cli([*args[:-2], "--ledger", str(tmp_path / "ledger-right.sqlite")], sandbox.env(), tmp_path)
    assert right.returncode == 0, (right.stdout, right.stderr)
    _check_all_created(latest_run(reports), sandbox, 5)


def test_wrong_base_url_stops_and_fixed_url_sends_everything(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 8)
    reports = tmp_path / "reports"
    args = _run_args(source, reports)
    env = sandbox.env()
    wrong = run_cli(args, {**env, "BIGCHANGE_BASE_URL": env["BIGCHANGE_BASE_URL"].removesuffix("/v1")}, tmp_path)
    assert wrong.returncode == 3, (wrong.stdout, wrong.stderr)
    assert "answered 404" in wrong.stderr and "BIGCHANGE_BASE_URL" in wrong.stderr, wrong.stderr
    assert set(results(latest_run(reports))["status"].to_list()) == {"pending"}
    right = run_cli(args, env, tmp_path)
    assert right.returncode == 0, (right.stdout, right.stderr)
    _check_all_created(latest_run(reports), sandbox, 8)


def test_resend_rejected_sends_unchanged_rejections_again(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    bad = {0: {"Customer": "999999"}}
    _import(tmp_path, sandbox, 3, bad=bad)
    posts = sandbox.stats()["requests"]["POST /v1/jobs"]
    _import(tmp_path, sandbox, 3, bad=bad)
    assert sandbox.stats()["requests"]["POST /v1/jobs"] == posts  # unchanged: not sent again
    run_dir = _import(tmp_path, sandbox, 3, extra=["--resend-rejected"], bad=bad)
    assert sum(sandbox.stats()["requests"]["POST /v1/jobs"].values()) == sum(posts.values()) + 1
    assert results(run_dir)["status"].to_list() == ["rejected", "already_created", "already_created"]
