"""What a new user meets in the first hour, pinned: one `jobimport:` prefix on usage errors, naming the
subcommand whose --help to read; `make`'s install step quiet (no setuptools banner), its log shown when it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--bogus"], "jobimport: the following arguments are required: command (see jobimport --help)"),
        (["status", "--bogus"], "jobimport: unrecognized arguments: --bogus (see jobimport --help)"),
        (
            ["run"],
            "jobimport: run: the following arguments are required: input, --mapping/-m (see jobimport run --help)",
        ),
        (
            ["status", "--limit", "0"],
            "jobimport: status: argument --limit: expected a number >= 1, got 0 (see jobimport status --help)",
        ),
    ],
)
def test_usage_errors_have_one_prefix(argv: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == line + "\n" and out == ""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.timeout(300)
def test_make_installs_quietly_and_shows_the_log_when_it_fails(tmp_path: Path) -> None:
    # The Makefile's own install recipe into a venv of the test's; PIP_NO_DEPS (pip's environment form of
    # --no-deps) keeps it to jobimport itself, the part whose build printed setuptools' editable-install banner.
    env = {**os.environ, "PIP_NO_DEPS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    venv = tmp_path / "venv"
    make = ["make", "--no-print-directory", f"VENV={venv}", f"PY={sys.executable}", f"{venv}/.installed"]
    done = subprocess.run(make, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{sys.executable} -m venv {venv}",
        f"installing jobimport and its dependencies into {venv} (log: {venv}/install.log)",
    ]
    assert done.stderr == ""
    assert "Successfully installed jobimport" in (venv / "install.log").read_text(encoding="utf-8")

    # a failing install: no index to get the build backend from
    broken = tmp_path / "broken"
    make = ["make", "--no-print-directory", f"VENV={broken}", f"PY={sys.executable}", f"{broken}/.installed"]
    env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "no-wheels-here")}
    failed = subprocess.run(make, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert failed.returncode != 0
    assert "the install failed: see above" in failed.stdout and "setuptools" in failed.stdout, failed.stdout
    assert not (broken / ".installed").exists()
