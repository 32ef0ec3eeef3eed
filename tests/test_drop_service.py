"""`jobimport drop` when things go wrong, and as a service: overlapping passes, a pass killed mid-file, the API
down, notifications (and a webhook that fails), `--watch` and SIGTERM. The real command against the sandbox on
127.0.0.1; every reference created exactly once.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from drops import by_name, drop, drop_env, job_rows, log_lines, mapping_file, start_drop, write_csv
from jobfiles import assert_created_exactly_once

TIMEOUT = ["--timeout", "1"]  # a pass after a kill waits this long before looking rows up


def _wait(predicate: Any, timeout: float, what: str, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the drop ended before {what}: {process.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _refs(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(1, n + 1)]


def test_overlapping_passes_and_a_killed_pass(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(latency_ms=25)  # 800 rows at 4 in flight: ~5 s, time to overlap
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    rows = 800
    write_csv(folder / "big.csv", job_rows("KILL", rows), age_s=120)
    write_csv(folder / "later.csv", job_rows("LATER", 5), age_s=60)

    first = start_drop(folder, mapping, "--max-concurrency", "4", *TIMEOUT, env=env, cwd=tmp_path)
    _wait(lambda: sandbox.stats()["jobs_created"] >= 100, 60, "the first pass to send", first)
    second = drop(folder, mapping, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("\n") == 1 and "another pass is working on" in second.stdout
    assert (folder / "processing" / "big.csv").is_file() and (folder / "later.csv").is_file()

    _wait(lambda: sandbox.stats()["jobs_created"] >= 300, 60, "the first pass to reach the kill point", first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert (folder / "processing" / "big.csv").is_file()  # killed mid-file: claimed, not filed

    resumed = drop(folder, mapping, *TIMEOUT, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert "resuming processing/big.csv" in resumed.stdout
    lines = by_name(folder)
    assert lines["big.csv"]["outcome"] == "done" and lines["later.csv"]["outcome"] == "done"
    assert sum(lines["big.csv"]["counts"].values()) == rows
    assert_created_exactly_once(sandbox, _refs("KILL", rows) + _refs("LATER", 5))
    assert sandbox.stats()["jobs_created"] == rows + 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_down_leaves_the_file_in_processing_until_it_is_back(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(port=_free_port())
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    write_csv(folder / "night.csv", job_rows("DOWN", 10))
    sandbox.stop()

    down = drop(folder, mapping, env=env, cwd=tmp_path)
    assert down.returncode == 3, (down.stdout, down.stderr)
    assert (folder / "processing" / "night.csv").is_file() and not (folder / "failed").exists()
    assert by_name(folder)["night.csv"]["outcome"] == "processing"

    sandbox.start()
    back = drop(folder, mapping, env=env, cwd=tmp_path)
    assert back.returncode == 0, (back.stdout, back.stderr)
    lines = log_lines(folder)
    assert [line["outcome"] for line in lines] == ["processing", "done"]
    assert len(lines[1]["runs"]) == 2 and lines[1]["runs"][0] == lines[0]["run_id"]
    assert_created_exactly_once(sandbox, _refs("DOWN", 10))


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/SECRET"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_and_command_are_told_about_attention_and_a_failing_webhook_changes_nothing(
    tmp_path: Path, sandbox: Any, webhook: Any
) -> None:
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    write_csv(folder / "fine.csv", job_rows("HOOKOK", 3), age_s=60)
    write_csv(folder / "needs_work.csv", job_rows("HOOK", 4, bad={1: {"Type": "abc"}}), age_s=30)
    told = tmp_path / "told.json"
    save = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"
    command = f'"{sys.executable}" -c "{save}" "{told}"'

    done = drop(folder, mapping, "--notify-webhook", webhook.url, "--notify-command", command, env=env, cwd=tmp_path)

    assert done.returncode == 1, (done.stdout, done.stderr)
    (message,) = webhook.received  # only the file that needs attention
    assert message["file"] == "needs_work.csv" and message["outcome"] == "attention" and message["exit_code"] == 1
    assert message["counts"] == {"created": 3, "invalid": 1} and message["run_id"]
    assert Path(message["reports"]).is_dir() and message["filed_to"].endswith("needs_work.csv")
    assert message["problems"] and "Type" in message["problems"][0]
    assert "needs_work.csv" in message["text"] and "attention" in message["text"]
    assert json.loads(told.read_text(encoding="utf-8")) == message

    webhook.status = 500  # a failing webhook: logged, retried once, the pass's outcome unchanged
    write_csv(folder / "again.csv", job_rows("HOOK2", 2, bad={0: {"Type": "abc"}}))
    failing = drop(folder, mapping, "--notify-webhook", webhook.url, env=env, cwd=tmp_path)
    assert failing.returncode == 1 and by_name(folder)["again.csv"]["outcome"] == "attention"
    assert len(webhook.received) == 3  # one try and one retry
    (failure,) = log_lines(folder, "notify_failed")
    assert failure["name"] == "again.csv" and "500" in failure["reason"]
    assert "SECRET" not in failing.stdout + failing.stderr + (folder / "drop-log.jsonl").read_text(encoding="utf-8")


def test_watch_takes_a_new_file_once_settled_and_stops_cleanly_on_sigterm(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(latency_ms=20)
    env = drop_env(sandbox, tmp_path / "home")
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    folder.mkdir()
    settle = 1.0
    options = ["--watch", "--settle", settle, "--max-concurrency", "2"]
    service = start_drop(folder, mapping, *options, env=env, cwd=tmp_path)
    try:
        assert service.stdout is not None
        assert service.stdout.readline().startswith("watching ")
        write_csv(folder / "first.csv", job_rows("WATCH", 5))
        dropped = time.monotonic()
        _wait(lambda: "first.csv" in by_name(folder), settle + 5, "the service to take first.csv", service)
        assert time.monotonic() - dropped <= settle + 5
        assert by_name(folder)["first.csv"]["outcome"] == "done"

        # SIGTERM mid-import: in-flight requests finish, the ledger and reports are written, exit 0.
        write_csv(folder / "second.csv", job_rows("WATCH2", 400))
        _wait(lambda: sandbox.stats()["jobs_created"] >= 5 + 20, 30, "the second import to start", service)
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, (out, err)
    assert "stopped watching" in out
    line = by_name(folder)["second.csv"]  # stopped part-way: stays in processing/ for the next start
    assert line["outcome"] == "processing" and line["counts"]["pending"] > 0
    assert (folder / "processing" / "second.csv").is_file() and (Path(line["reports"]) / "results.csv").is_file()
    assert sum(line["counts"].values()) == 400 and line["counts"]["created"] == sandbox.stats()["jobs_created"] - 5
    assert all(n == 1 for n in sandbox.stats()["creations_per_reference"].values())
