"""deploy/: the cron and systemd examples hand the settings to jobimport with --env-file only (no shell sourcing,
no systemd EnvironmentFile=), create the folder they log into, and `make install` is a production install
without the dev extras. The cron line is run for real, with a secret full of shell characters."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from drops import by_name, job_rows, mapping_file, write_csv

from pipeline.settings import Secret

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SHELLY_SECRET = "S$HOME #x&(y)`z`"


def cron_line() -> str:
    lines = [line for line in (DEPLOY / "cron.example").read_text(encoding="utf-8").splitlines() if line.strip()]
    (line,) = [line for line in lines if re.match(r"^[\d*/,-]+ ", line)]
    return line.split(maxsplit=5)[5]


def test_the_examples_read_settings_with_env_file_only() -> None:
    command = cron_line()
    assert "--env-file /etc/jobimport/env" in command
    assert "set -a" not in command and ". /etc" not in command and "source " not in command
    assert command.startswith('mkdir -p "$HOME/log" && ') and '>> "$HOME/log/jobimport-drop.log"' in command
    assert "%" not in command  # (cron turns % into a newline)
    for unit in ("jobimport-drop.service", "jobimport-drop-watch.service"):
        text = (DEPLOY / unit).read_text(encoding="utf-8")
        active = [line for line in text.splitlines() if not line.startswith("#")]
        assert not any(line.startswith("EnvironmentFile") for line in active), unit
        (start,) = [line for line in active if line.startswith("ExecStart=")]
        assert "--env-file /etc/jobimport/env" in start, unit
        assert "StateDirectory=jobimport" in active, unit  # (systemd creates /var/lib/jobimport)


def test_the_cron_line_runs_as_written_and_a_secret_with_shell_characters_arrives_intact(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory(client_secret=Secret(SHELLY_SECRET))
    folder = tmp_path / "drops"
    write_csv(folder / "nightly.csv", job_rows("CRON", 3), age_s=120)
    env_file = tmp_path / "env"
    settings = {**sandbox.env(), "BIGCHANGE_CLIENT_SECRET": SHELLY_SECRET, "JOBIMPORT_HOME": str(tmp_path / "state")}
    env_file.write_text("".join(f"{key}='{value}'\n" for key, value in settings.items()), encoding="utf-8")
    command = (
        cron_line()
        .replace("/opt/jobimport/.venv/bin/jobimport", f"'{sys.executable}' -m pipeline")
        .replace("/srv/drops/jobs", str(folder))
        .replace("/etc/jobimport/jobs.toml", str(mapping_file(tmp_path / "maps")))
        .replace("/etc/jobimport/env", str(env_file))
    )
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", (done.stdout, done.stderr)
    log = (home / "log" / "jobimport-drop.log").read_text(encoding="utf-8")
    assert "nightly.csv" in log and SHELLY_SECRET not in log
    assert by_name(folder)["nightly.csv"]["outcome"] == "done"  # the sandbox took the secret: jobs created


def test_make_install_is_a_production_install_without_dev_extras(tmp_path: Path) -> None:
    planned = subprocess.run(
        ["make", "-n", "install", f"PREFIX={tmp_path}/opt", "PY=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"python3 -m venv {tmp_path}/opt/.venv" in planned
    assert f"{tmp_path}/opt/.venv/bin/pip install --quiet ." in planned
    assert "[dev]" not in planned and " -e " not in planned
