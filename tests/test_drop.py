"""`jobimport drop FOLDER`: a night of files through the real command against the sandbox on 127.0.0.1.

Each file lands in the folder its outcome says, with its companions; the drop log has a line per file and per
pass; the pass exits with the worst file's code; the sandbox created every reference exactly once; lock files,
temporary names and unsettled files are never touched.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from drops import (
    HEADER,
    age,
    by_name,
    drop,
    drop_env,
    job_rows,
    log_lines,
    mapping_file,
    tree,
    write_csv,
)
from jobfiles import assert_created_exactly_once, run_cli

from pipeline.cli import main
from pipeline.drop import Route, filed_path

TODAY = date.today().isoformat()


def test_a_night_of_ten_files_each_filed_by_its_outcome(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    clean = job_rows("CLEAN", 8)
    files = {  # name → (rows or raw bytes, header); written oldest first so the pass takes them in this order
        "clean.csv": clean,
        "clean_copy_renamed.csv": clean,  # the same export again under another name: a duplicate
        "some_invalid.csv": job_rows("INV", 6, bad={1: {"Type": "abc"}, 4: {"Customer": "x"}}),
        "api_rejects.csv": job_rows("REJ", 5, bad={2: {"Customer": "999999"}}),
        "drift.csv": None,  # headers changed: Customer became Client
        "junk.csv": b"PK\x03\x04" + random.Random(7).randbytes(3000),  # e.g. a workbook saved as .csv
        "empty_night.csv": [],
        "empty_night_2.csv": [],  # byte-identical to the first empty night: never a duplicate
        "other.tsv": None,  # no --mapping route matches *.tsv
        "second.csv": job_rows("SECOND", 4),
    }
    for i, (name, content) in enumerate(files.items()):
        path = folder / name
        if name == "drift.csv":
            write_csv(path, job_rows("DRIFT", 3), header=["Ref", "Type", "Client", "Notes", "Access Code"])
        elif name == "other.tsv":
            path.write_text("Ref\tType\nT-1\t101\n", encoding="utf-8")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_csv(path, content)
        age(path, 600 - i)
    ignored = ["~$clean.xlsx", ".~lock.clean.csv#", "big.csv.part", "upload.tmp", "x.crdownload", ".hidden.csv"]
    for name in ignored:
        (folder / name).write_text("Ref,Type\n", encoding="utf-8")
        age(folder / name, 900)

    done = drop(folder, f"*.csv={mapping}", env=env, cwd=tmp_path)

    assert done.returncode == 2, (done.stdout, done.stderr)  # the worst file: could not be imported
    day = lambda outcome, name: f"{outcome}/{TODAY}/{name}"  # noqa: E731
    assert tree(folder) == sorted(
        [
            ".jobimport-drop.lock",
            "drop-log.jsonl",
            *ignored,
            day("done", "clean.csv"),
            day("done", "clean_copy_renamed.csv"),
            day("done", "clean_copy_renamed.csv.duplicate.txt"),
            day("attention", "some_invalid.csv"),
            day("attention", "some_invalid.corrections.xlsx"),
            day("attention", "some_invalid.corrections.csv"),
            day("attention", "api_rejects.csv"),
            day("attention", "api_rejects.corrections.xlsx"),
            day("attention", "api_rejects.corrections.csv"),
            day("failed", "drift.csv"),
            day("failed", "drift.csv.error.txt"),
            day("failed", "junk.csv"),
            day("failed", "junk.csv.error.txt"),
            day("done", "empty_night.csv"),
            day("done", "empty_night_2.csv"),
            day("failed", "other.tsv"),
            day("failed", "other.tsv.error.txt"),
            day("done", "second.csv"),
        ]
    )
    for name in ignored:  # never touched
        assert (folder / name).read_text(encoding="utf-8") == "Ref,Type\n"

    drift_error = (folder / day("failed", "drift.csv.error.txt")).read_text(encoding="utf-8")
    assert "'Customer'" in drift_error and "Client" in drift_error and "\n" not in drift_error.strip()
    assert "no --mapping route" in (folder / day("failed", "other.tsv.error.txt")).read_text(encoding="utf-8")
    note = (folder / day("done", "clean_copy_renamed.csv.duplicate.txt")).read_text(encoding="utf-8")
    assert "clean.csv" in note and "not imported again" in note

    lines = by_name(folder)
    assert len(log_lines(folder)) == 10 and set(lines) == set(files)
    assert {n: (line["outcome"], line["exit_code"]) for n, line in lines.items()} == {
        "clean.csv": ("done", 0),
        "clean_copy_renamed.csv": ("done", 0),
        "some_invalid.csv": ("attention", 1),
        "api_rejects.csv": ("attention", 1),
        "drift.csv": ("failed", 2),
        "junk.csv": ("failed", 2),
        "empty_night.csv": ("done", 0),
        "empty_night_2.csv": ("done", 0),
        "other.tsv": ("failed", 2),
        "second.csv": ("done", 0),
    }
    assert lines["clean.csv"]["counts"] == {"created": 8} and lines["clean.csv"]["rows"] == 8
    assert lines["some_invalid.csv"]["counts"] == {"created": 4, "invalid": 2}
    assert lines["api_rejects.csv"]["counts"] == {"created": 4, "invalid": 1}  # caught by the pre-flight
    assert lines["empty_night_2.csv"]["rows"] == 0 and lines["empty_night_2.csv"]["duplicate_of"] is None
    assert lines["clean_copy_renamed.csv"]["duplicate_of"]["run_id"] == lines["clean.csv"]["run_id"]
    assert lines["clean_copy_renamed.csv"]["run_id"] is None  # nothing was imported
    for line in lines.values():
        assert len(line["sha256"] or "") == 64 or line["name"] == "other.tsv"
        if line["run_id"]:
            assert (Path(line["reports"]) / "results.csv").is_file()
    (pass_line,) = log_lines(folder, "pass")
    assert pass_line["files"] == 10 and pass_line["exit_code"] == 2

    created = ["CLEAN", "INV", "REJ", "SECOND"]
    references = [j["reference"] for j in sandbox.jobs()]
    assert all(r.split("-")[0] in created for r in references)
    assert_created_exactly_once(sandbox, [f"CLEAN-{i:05d}" for i in range(1, 9)] + [f"SECOND-{i:05d}" for i in (1, 2)])
    assert sandbox.stats()["jobs_created"] == 8 + 4 + 4 + 4

    # The same clean export dropped once more, the next night: a duplicate, nothing sent.
    posts = sandbox.stats()["requests"]["POST /v1/jobs"]
    shutil.copy(folder / day("done", "clean.csv"), folder / "clean_again.csv")
    again = drop(folder, f"*.csv={mapping}", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert by_name(folder)["clean_again.csv"]["duplicate_of"]["name"] == "clean.csv"
    assert sandbox.stats()["requests"]["POST /v1/jobs"] == posts

    # `jobimport report` can find a run's file where the drop filed it (the ledger recorded processing/NAME).
    run_id = lines["some_invalid.csv"]["run_id"]
    filed = filed_path(folder / "processing" / "some_invalid.csv", run_id)
    assert filed == folder / day("attention", "some_invalid.csv")
    assert filed_path(folder / "elsewhere.csv", run_id) is None
    rebuilt = run_cli(["report", run_id, "--report-dir", str(tmp_path / "rebuilt")], env, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (tmp_path / "rebuilt" / run_id / "corrections.xlsx").is_file()

    status = run_cli(["status", "--report-dir", str(folder / "reports")], env, tmp_path)
    assert status.returncode == 0, status.stderr
    assert "drop pass" in status.stdout and str(folder) in status.stdout


def test_only_settled_files_are_taken(tmp_path: Path, sandbox: Any) -> None:
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    folder.mkdir()
    path = folder / "slow.csv"

    def write_slowly(prefix: str, keep_old_mtime: bool, stop: threading.Event, started: threading.Event) -> None:
        """Chunks of 5 rows every 0.2 s until told to stop (while a pass runs), the last line cut mid-way."""
        rows = iter(job_rows(prefix, 10_000))
        with path.open("w", encoding="utf-8") as handle:
            handle.write(",".join(HEADER) + "\n")
            pending = ""
            while not stop.is_set():
                chunk = "".join(",".join(r[h] for h in HEADER) + "\n" for r in (next(rows) for _ in range(5)))
                handle.write(pending + chunk[:-7])
                pending = chunk[-7:]
                handle.flush()
                if keep_old_mtime:  # a copy tool that keeps the source's mtime: only the size tells
                    age(path, 3600)
                started.set()
                time.sleep(0.2)
            handle.write(pending)

    def pass_while_writing(prefix: str, keep_old_mtime: bool) -> Any:
        stop, started = threading.Event(), threading.Event()
        writer = threading.Thread(target=write_slowly, args=(prefix, keep_old_mtime, stop, started))
        writer.start()
        started.wait()
        try:
            return drop(folder, mapping, "--settle", "2", env=env, cwd=tmp_path)
        finally:
            stop.set()
            writer.join()

    # 1. A copy that keeps an old mtime: the pass sees the size change while it looks, and leaves the file.
    busy = pass_while_writing("OLD", keep_old_mtime=True)
    assert busy.returncode == 0 and "no file ready" in busy.stdout, busy.stdout
    assert tree(folder) == [".jobimport-drop.lock", "drop-log.jsonl", "slow.csv"]

    # 2. A fresh mtime: not settled until it is `--settle` seconds old; then taken whole.
    early = pass_while_writing("SLOW", keep_old_mtime=False)
    assert early.returncode == 0 and "no file ready" in early.stdout and path.is_file()
    assert "1 left for a later pass" in early.stdout
    written = len(path.read_text(encoding="utf-8").splitlines()) - 1
    age(path, 3)
    taken = drop(folder, mapping, "--settle", "2", env=env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stdout
    assert by_name(folder)["slow.csv"]["counts"] == {"created": written}

    # 3. With a ready marker nothing is taken before its marker; the marker is consumed.
    marked = write_csv(folder / "marked.csv", job_rows("MARK", 3), age_s=3600)
    waiting = drop(folder, mapping, "--ready-marker", ".ready", env=env, cwd=tmp_path)
    assert waiting.returncode == 0 and marked.is_file()
    (folder / "marked.csv.ready").write_text("", encoding="utf-8")
    ready = drop(folder, mapping, "--ready-marker", ".ready", env=env, cwd=tmp_path)
    assert ready.returncode == 0 and not marked.exists() and not (folder / "marked.csv.ready").exists()
    assert by_name(folder)["marked.csv"]["outcome"] == "done"


def test_keep_days_prunes_old_done_days_and_their_reports_only(tmp_path: Path, sandbox: Any) -> None:
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    old = (date.today() - timedelta(days=10)).isoformat()
    recent = (date.today() - timedelta(days=2)).isoformat()
    for outcome, day, name, run in [
        ("done", old, "a.csv", "RUN-OLD-DONE"),
        ("done", recent, "b.csv", "RUN-RECENT-DONE"),
        ("attention", old, "c.csv", "RUN-OLD-ATTENTION"),
        ("failed", old, "d.csv", None),
    ]:
        write_csv(folder / outcome / day / name, job_rows("K", 1))
        if run:
            (folder / "reports" / run).mkdir(parents=True)
            (folder / "reports" / run / "results.csv").write_text("row\n", encoding="utf-8")
        line = {"event": "file", "name": name, "outcome": outcome, "path": f"{outcome}/{day}/{name}", "run_id": run}
        line["runs"] = ["RUN-OLD-STOPPED", run] if name == "a.csv" else [run]
        with (folder / "drop-log.jsonl").open("a", encoding="utf-8") as handle:
            import json

            handle.write(json.dumps(line) + "\n")
    (folder / "reports" / "RUN-OLD-STOPPED").mkdir()
    (folder / "reports" / "ledger-1001.sqlite").write_text("keep", encoding="utf-8")
    (folder / "done" / "notes").mkdir()  # not a day folder: left alone

    done = drop(folder, mapping, "--keep-days", "7", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stdout
    assert not (folder / "done" / old).exists()
    assert (folder / "done" / recent / "b.csv").is_file() and (folder / "done" / "notes").is_dir()
    assert (folder / "attention" / old / "c.csv").is_file() and (folder / "failed" / old / "d.csv").is_file()
    assert sorted(p.name for p in (folder / "reports").iterdir()) == [
        "RUN-OLD-ATTENTION",
        "RUN-RECENT-DONE",
        "ledger-1001.sqlite",
    ]
    assert log_lines(folder, "pruned")[0]["days"] == [old]


def test_routes_and_usage_errors_are_one_line(
    tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Route.parse("maps/jobs.toml") == Route(None, Path("maps/jobs.toml"))
    route = Route.parse("Jobs_*.CSV=maps/legacy.toml")
    assert route.matches("jobs_0412.csv") and not route.matches("orders.csv")
    for name, value in drop_env(sandbox, tmp_path / "home").items():
        monkeypatch.setenv(name, value)

    def jobimport(*args: object) -> tuple[int, str]:
        code = main(["drop", *(str(a) for a in args)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    code, err = jobimport(tmp_path / "nowhere", "--mapping", "m.toml")
    assert code == 2 and err.count("\n") == 1 and "drop folder not found" in err
    folder = tmp_path / "drop"
    write_csv(folder / "jobs.csv", job_rows("BAD", 2))
    code, err = jobimport(folder, "--mapping", tmp_path / "missing.toml", "--settle", "0")
    assert code == 2 and err.count("\n") == 1 and "mapping file not found" in err
    assert (folder / "jobs.csv").is_file()  # a broken mapping touches no file
    assert log_lines(folder, "pass")[0]["exit_code"] == 2
    code, err = jobimport(folder, "--mapping", tmp_path / "missing.toml", "--watch")
    assert code == 2 and "mapping file not found" in err  # says so at once, not later
    code, err = jobimport(folder, "--mapping", "x=")
    assert code == 2 and "PATTERN=MAPPING" in err


def test_a_header_only_file_whose_headers_drifted_is_failed_not_an_empty_night(tmp_path: Path, sandbox: Any) -> None:
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    write_csv(folder / "quiet.csv", [], age_s=600)
    write_csv(folder / "renamed.csv", [], header=["Ref", "Type", "Client", "Notes", "Access Code"], age_s=600)
    done = drop(folder, mapping, env=env, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = by_name(folder)
    assert (lines["quiet.csv"]["outcome"], lines["renamed.csv"]["outcome"]) == ("done", "failed")
    error = (folder / "failed" / TODAY / "renamed.csv.error.txt").read_text(encoding="utf-8").strip()
    assert "no data rows" in error and "missing 'Customer'" in error and "\n" not in error
