"""Encodings decided honestly, and a console that file contents cannot steer: control characters in names,
headers and values shown as [U+001B], a closed pipe survived, connect timeouts honoured for TLS."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobfiles import CONSTANT_MAPPING, run_cli

MAPPING = CONSTANT_MAPPING


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def validate(tmp_path: Path, path: Path, mapping: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        ["validate", str(path), "--mapping", str(mapping), "--report-dir", str(tmp_path / "r"), *extra], {}, tmp_path
    )


def test_utf8_with_one_stray_byte_is_refused_naming_it_and_both_ways_out(tmp_path: Path, mapping: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_bytes("Ref,Notes\nR1,café crème\nR2,naïve\n".encode() + b"R3,caf\xe9\n")
    refused = validate(tmp_path, path, mapping)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"jobimport: {path}: is UTF-8 except for 1 byte: the first, 0xe9, is at line 4, byte 7 of that line "
        "(offset 42 in the file); fix those bytes (save the file again as UTF-8), or, if the file truly is "
        'cp1252, give --encoding cp1252 (or encoding = "cp1252" in the mapping\'s [source])\n'
    )
    chosen = validate(tmp_path, path, mapping, "--encoding", "cp1252")  # the user's decision, reported
    assert chosen.returncode == 0, chosen.stderr
    run = sorted((tmp_path / "r").iterdir())[-1]
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["encoding"] == "cp1252"
    assert "Encoding cp1252" in (run / "summary.html").read_text(encoding="utf-8")


def test_cp1252_is_chosen_only_when_the_bytes_give_no_sign_of_utf8(tmp_path: Path, mapping: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes("Ref,Notes\nR1,café crème – 5 €\n".encode("cp1252"))
    done = validate(tmp_path, path, mapping)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith(f"{path}, cp1252")
    run = sorted((tmp_path / "r").iterdir())[-1]
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["encoding"] == "cp1252" and any("read as cp1252" in n for n in summary["notes"])
    assert "Encoding cp1252" in (run / "summary.html").read_text(encoding="utf-8")
    results = (run / "results.csv").read_text(encoding="utf-8-sig")
    assert "café crème – 5 €" in results


def test_control_characters_in_names_headers_and_values_are_shown_not_obeyed(tmp_path: Path, mapping: Path) -> None:
    name = "ev\x1b[2Jil\nname\x07.csv"
    path = tmp_path / name
    path.write_bytes(b"Ref,Notes,Extra\x1b]0;owned\x07\x00\nR1,ok,1\n")
    done = validate(tmp_path, path, mapping)
    assert done.returncode == 0, done.stderr
    for text in (done.stdout, done.stderr):
        assert not any(c in text for c in "\x1b\x07\x00"), text
    first = done.stdout.splitlines()[0]
    assert first.endswith("ev[U+001B][2Jil[U+000A]name[U+0007].csv, utf-8")  # one line, whatever the name holds
    assert "'Extra[U+001B]]0;owned[U+0007][U+0000]'" in done.stdout

    broken = tmp_path / "bad\x1b[31m.csv"
    broken.write_bytes(b"Ref,Notes\nR1,x,y,z\n")
    refused = validate(tmp_path, broken, mapping)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "bad[U+001B][31m.csv" in refused.stderr and "\x1b" not in refused.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, mapping: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("Ref,Notes\nR1,a\n", encoding="utf-8")
    # `jobimport validate … | head -1`: the reader is gone before most of the output is written
    shell = f"'{sys.executable}' -m pipeline validate '{path}' --mapping '{mapping}' --report-dir '{tmp_path / 'r'}'"
    done = subprocess.run(
        ["/bin/sh", "-c", f'{shell} | head -c 1 > /dev/null; echo "${{PIPESTATUS:-}}"'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.stderr == "", done.stderr
    # with the reader closed from the start, the exit code is still the command's own
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "validate", str(path), "--mapping", str(mapping), "--report-dir", "r"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    errors = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0 and errors == "", errors


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


def test_a_tls_port_that_never_answers_fails_within_the_timeout(tmp_path: Path, silent_port: int) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Ref,Notes\nR1,a\nR2,b\n", encoding="utf-8")
    (tmp_path / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    env = {
        "BIGCHANGE_BASE_URL": f"https://127.0.0.1:{silent_port}/v1",
        "BIGCHANGE_CLIENT_ID": "c",
        "BIGCHANGE_CLIENT_SECRET": "s",
        "BIGCHANGE_CUSTOMER_ID": "1001",
        "JOBIMPORT_HOME": str(tmp_path / "home"),
    }
    started = time.monotonic()
    done = run_cli(
        ["run", str(jobs), "-m", str(tmp_path / "mapping.toml"), "--timeout", "3", "--report-dir", "r"], env, tmp_path
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    summary = json.loads((sorted((tmp_path / "r").iterdir())[-1] / "summary.json").read_text(encoding="utf-8"))
    assert "cannot reach the token endpoint" in done.stderr and "ConnectionTimeoutError" in done.stderr
    assert summary["duration_s"] <= 3 + 1.5, summary["duration_s"]  # one connect timeout, shared by pre-flight and run
    assert elapsed < 15, elapsed  # (the whole command, interpreter start and reports included, on a loaded machine)
