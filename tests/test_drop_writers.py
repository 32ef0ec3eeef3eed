"""Drops whose writer has not finished: nothing is filed that changed under the import, a filed file that grows
is imported again (its new rows only), and a ready marker (`NAME.ready` / `NAME.done`) is the safe way.

Real `jobimport drop` commands against the sandbox on 127.0.0.1; the writer is a real open file handle that keeps
appending after the file was renamed into processing/ and filed (what a slow exporter does on Linux and macOS).
"""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

from drops import HEADER, age, by_name, drop, drop_env, job_rows, log_lines, mapping_file, tree
from jobfiles import assert_created_exactly_once

TODAY = date.today().isoformat()


def _lines(rows: list[dict[str, str]]) -> str:
    return "".join(",".join(r[h] for h in HEADER) + "\n" for r in rows)


def test_a_writer_that_pauses_past_settle_loses_no_row(tmp_path: Path, sandbox: Any) -> None:
    """Issue 22, finding 2: 10 rows written, a pause longer than --settle, 10 more. The first pass imports 10 and
    files the file in done/; the writer still holds it and appends; the next pass finds it grew and imports the
    10 new rows: 20 jobs, each once, and the file in done/ holds the 20 rows."""
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    folder.mkdir()
    path = folder / "stall.csv"
    rows = job_rows("STALL", 20)
    with path.open("w", encoding="utf-8") as writer:
        writer.write(",".join(HEADER) + "\n" + _lines(rows[:10]))
        writer.flush()
        age(path, 10)  # the pause: older than --settle 5
        first = drop(folder, mapping, "--settle", "5", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert by_name(folder)["stall.csv"]["counts"] == {"created": 10}
        filed = folder / "done" / TODAY / "stall.csv"
        assert filed.is_file()
        writer.write(_lines(rows[10:]))  # the writer goes on, into the file now in done/
    assert len(filed.read_text(encoding="utf-8").splitlines()) == 21

    # still being written (fresh mtime): left for a later pass
    waiting = drop(folder, mapping, "--settle", "5", env=env, cwd=tmp_path)
    assert waiting.returncode == 0 and "changed after it was filed" not in waiting.stdout

    age(filed, 10)
    second = drop(folder, mapping, "--settle", "5", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    print(first.stdout + second.stdout)
    assert f"stall.csv changed after it was filed in done/{TODAY} (" in second.stdout
    assert "importing it again; only its new rows are sent" in second.stdout
    last = by_name(folder)["stall.csv"]
    assert last["counts"] == {"created": 10, "already_created": 10}
    assert last["outcome"] == "done" and last["path"] == f"done/{TODAY}/stall.csv"
    assert "changed after it was filed" in last["reason"]
    assert [p for p in tree(folder) if p.startswith("done/")] == [f"done/{TODAY}/stall.csv"]
    assert len(filed.read_text(encoding="utf-8").splitlines()) == 21
    assert_created_exactly_once(sandbox, [r["Ref"] for r in rows])
    assert len([j for j in sandbox.jobs() if j["reference"].startswith("STALL-")]) == 20

    # nothing changed since: the next pass leaves it alone
    quiet = drop(folder, mapping, "--settle", "5", env=env, cwd=tmp_path)
    assert "changed after it was filed" not in quiet.stdout and "no file ready" in quiet.stdout


def test_a_file_that_changes_while_it_is_imported_is_not_filed_as_done(tmp_path: Path, sandbox: Any) -> None:
    """A writer that keeps appending during the import (taken at once with --settle 0): each import is followed by
    another until the file holds still, here never: after 3 imports it goes to attention/ with a note. When the
    writer has finished, the next pass imports the rest and moves it to done/."""
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    folder.mkdir()
    path = folder / "busy.csv"
    rows = iter(job_rows("BUSY", 100_000))
    written: list[str] = []
    stop, started = threading.Event(), threading.Event()

    def keep_writing() -> None:
        with path.open("w", encoding="utf-8") as handle:
            handle.write(",".join(HEADER) + "\n")
            while not stop.is_set():
                batch = [next(rows) for _ in range(3)]
                handle.write(_lines(batch))  # whole lines only: every read sees complete rows
                handle.flush()
                written.extend(r["Ref"] for r in batch)
                started.set()
                time.sleep(0.05)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    started.wait()
    try:
        busy = drop(folder, mapping, "--settle", "0", env=env, cwd=tmp_path)
    finally:
        stop.set()
        writer.join()
    print(busy.stdout)
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert busy.stdout.count("busy.csv changed while it was imported") == 3
    assert "importing it again: only new rows are sent" in busy.stdout
    line = by_name(folder)["busy.csv"]
    assert line["outcome"] == "attention" and len(line["runs"]) == 3
    note = folder / "attention" / TODAY / "busy.csv.changing.txt"
    assert "was still changing after 3 imports" in note.read_text(encoding="utf-8")

    filed = folder / "attention" / TODAY / "busy.csv"
    age(filed, 10)
    rest = drop(folder, mapping, "--settle", "5", env=env, cwd=tmp_path)
    print(rest.stdout)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "busy.csv changed after it was filed in attention/" in rest.stdout
    last = by_name(folder)["busy.csv"]
    assert last["outcome"] == "done" and last["path"] == f"done/{TODAY}/busy.csv"
    assert sum(last["counts"].values()) == len(written)
    assert_created_exactly_once(sandbox, written)
    assert len([j for j in sandbox.jobs() if j["reference"].startswith("BUSY-")]) == len(written)


def test_a_ready_marker_is_honoured_without_options(tmp_path: Path, sandbox: Any) -> None:
    """`NAME.ready` or `NAME.done` beside a file: taken at once (no settling), the marker consumed; a fresh file
    without one waits for --settle."""
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    folder.mkdir()
    for name, prefix in (("a.csv", "RDYA"), ("b.csv", "RDYB"), ("c.csv", "RDYC")):
        (folder / name).write_text(",".join(HEADER) + "\n" + _lines(job_rows(prefix, 2)), encoding="utf-8")
    (folder / "a.csv.ready").write_text("", encoding="utf-8")
    (folder / "b.csv.done").write_text("", encoding="utf-8")
    done = drop(folder, mapping, "--settle", "3600", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line["name"] for line in log_lines(folder)) == ["a.csv", "b.csv"]
    assert not (folder / "a.csv.ready").exists() and not (folder / "b.csv.done").exists()
    assert (folder / "c.csv").is_file() and "1 left for a later pass" in done.stdout
