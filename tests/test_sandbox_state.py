"""The sandbox as a process: state kept across restarts (ids keep growing), torn and corrupt state files, the
`python -m pipeline.sandbox` entry point (ready line, clean stop, one-line errors)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.sandbox.process import SandboxProcess, SandboxStartError


def job(reference: str) -> dict[str, Any]:
    return {"typeId": 101, "contactId": 5001, "reference": reference}


def test_state_survives_a_restart(tmp_path: Path, sandbox_factory: Any, sandbox_api: Any) -> None:
    state = tmp_path / "state.jsonl"
    sandbox = sandbox_factory(state=state)
    api = sandbox_api(sandbox)
    ids = [api.post_job(job(f"P-{n}")).json()["id"] for n in range(3)]
    before = sandbox.jobs()
    port = sandbox.root_url
    sandbox.restart()
    assert sandbox.root_url == port and sandbox.returncode == 0
    assert sandbox.jobs() == before
    api.headers["Authorization"] = f"Bearer {api.new_token()}"  # tokens do not survive a restart
    found = api.get("/jobs", reference=["P-0", "P-2"]).json()["items"]
    assert [i["id"] for i in found] == [ids[0], ids[2]]
    new_id = api.post_job(job("P-3")).json()["id"]
    assert new_id > max(ids)
    sandbox.reset()  # forgets the jobs, not the id sequence, also across a restart
    sandbox.restart()
    assert sandbox.jobs() == []
    api.headers["Authorization"] = f"Bearer {api.new_token()}"
    assert api.post_job(job("P-4")).json()["id"] > new_id


def test_a_torn_last_line_is_dropped(tmp_path: Path, sandbox_factory: Any, sandbox_api: Any) -> None:
    state = tmp_path / "state.jsonl"
    good = {
        "job": {
            "id": 10000005,
            "reference": "OLD",
            "typeId": 101,
            "contactId": 5001,
            "status": "Unscheduled",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "body": job("OLD"),
        }
    }
    state.write_text(json.dumps(good) + "\n" + '{"job": {"id": 100000', encoding="utf-8")
    sandbox = sandbox_factory(state=state)
    assert "torn last line removed" in sandbox.output()
    assert [j["reference"] for j in sandbox.jobs()] == ["OLD"]
    api = sandbox_api(sandbox)
    assert api.post_job(job("NEW")).json()["id"] == 10000006
    sandbox.restart()
    assert [j["reference"] for j in sandbox.jobs()] == ["OLD", "NEW"]


def test_a_corrupt_state_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    state.write_text("not json\n" + json.dumps({"next_id": 5}) + "\n", encoding="utf-8")
    with pytest.raises(SandboxStartError, match=r"state.jsonl, line 1: not a job record") as caught:
        SandboxProcess(state=state).start()
    assert "Traceback" not in str(caught.value)


def _run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.sandbox", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--p500", "2"], "p500 is a probability between 0 and 1"),
        (["--p500", "0.7", "--p-lost", "0.7"], "must be <= 1"),
        (["--data", "/nonexistent/data.json"], "cannot read sandbox data file /nonexistent/data.json"),
        (["--token-lifetime", "0"], "token_lifetime"),
    ],
)
def test_entry_point_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: "), done.stderr


def test_bad_data_file_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"jobTypes": [{"id": "x"}], "contacts": [], "persons": []}), encoding="utf-8")
    done = _run("--data", str(data))
    assert done.returncode == 2 and f"{data}, jobTypes[0]: 'id' must be a whole number" in done.stderr


def test_port_in_use(sandbox: SandboxProcess) -> None:
    port = sandbox.root_url.rsplit(":", 1)[1]
    done = _run("--port", port)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_foreground_ready_line_and_clean_stop() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sandbox", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(
            f"BigChange sandbox listening on http://127.0.0.1:{port} (API http://127.0.0.1:{port}/v1"
        )
        assert "sandbox-secret" not in line
        process.send_signal(2)  # Ctrl-C
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == 0 and "stopped" in out


def test_start_failure_names_the_cause(sandbox: SandboxProcess) -> None:
    port = int(sandbox.root_url.rsplit(":", 1)[1])
    with pytest.raises(SandboxStartError, match="cannot listen"):
        SandboxProcess(port=port).start()
