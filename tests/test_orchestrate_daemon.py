"""End to end with a real `dagster-daemon run` in a subprocess (temporary DAGSTER_HOME, the shipped
deploy/dagster/definitions.py and dagster.yaml), three tenants of one sandbox, time-bounded:

- files dropped into three tenants' folders: every run finishes, every job is created once, every file is filed;
- the same file dropped again after its import: filed as a duplicate by its own run, nothing sent again;
- a tenant without a shared ledger (and not `local_ledger`): its run is refused in one line, its file untouched;
- the sensors' state (cursors) deleted and the daemon restarted: no second run for any key, no second import.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_tenants import write_tenants
from drops import job_rows, mapping_file, write_csv

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CUSTOMERS = [1001, 1002, 1003, 1004]  # 1004: no shared ledger, not local_ledger → refused
SECRET = "daemon-test-secret"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from pipeline.sandbox.process import SandboxProcess
    from pipeline.settings import Secret

    with SandboxProcess(customers=tuple(CUSTOMERS), client_secret=Secret(SECRET)) as process:
        yield process


class Daemon:
    """`dagster-daemon run` on the shipped code location, in its own process group."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"

    def start(self) -> None:
        workspace = ROOT / "deploy" / "dagster" / "workspace.yaml"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                cwd=self.home,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    tail = daemon.log.read_text(errors="replace")[-3000:] if daemon.log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; daemon log tail:\n{tail}")


def runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs())


def test_a_real_daemon_imports_each_file_once_and_never_twice(sandbox, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster" / "dagster.yaml", home / "dagster.yaml")
    tenants = write_tenants(
        tmp_path,
        sandbox,
        CUSTOMERS,
        mapping_file(tmp_path / "m"),
        settle_s=1,
        interval_s=1,
        local_ledger=True,
        extra={1004: {"local_ledger": False}},
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "JOBIMPORT_TENANTS": str(tenants),
        "JOBIMPORT_TEST_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    # the storage is created by one process before the daemon and its code server open it
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)
    drops = tmp_path / "drops"
    rows = {1001: 30, 1002: 20, 1003: 10}
    for customer, n in rows.items():
        write_csv(drops / f"c{customer}" / "monday.csv", job_rows(f"MON{customer}", n), age_s=5)
        write_csv(drops / f"c{customer}" / "tuesday.csv", job_rows(f"TUE{customer}", 5), age_s=5)
    write_csv(drops / "c1004" / "monday.csv", job_rows("REFUSED", 3), age_s=5)

    daemon = Daemon(home, env)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # (this test process reads the same instance)
    try:
        daemon.start()
        with dg.DagsterInstance.get() as instance:

            def imported() -> bool:
                done = [r for r in runs(instance) if r.is_finished]
                return len(done) == 7 and all(
                    not (drops / f"c{c}" / name).exists() for c in rows for name in ("monday.csv", "tuesday.csv")
                )

            wait_for(imported, 300, "7 finished runs and every file taken", daemon)
            by_tenant = {c: [r for r in runs(instance) if r.tags.get("jobimport/tenant") == f"c{c}"] for c in CUSTOMERS}
            for customer, n in rows.items():
                assert len(sandbox.jobs(customer_id=customer)) == n + 5, customer
                assert len(by_tenant[customer]) == 2
                assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in by_tenant[customer])
                filed = sorted(p.name for p in (drops / f"c{customer}" / "done").glob("*/*.csv"))
                assert filed == ["monday.csv", "tuesday.csv"]
            assert sandbox.stats()["duplicates"] == []
            (refused,) = by_tenant[1004]
            assert refused.status == dg.DagsterRunStatus.FAILURE
            failure = next(
                e
                for e in instance.all_logs(refused.run_id)
                if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
            )
            description = failure.dagster_event.step_failure_data.user_failure_data.description
            assert "no shared ledger" in description and "\n" not in description
            assert (drops / "c1004" / "monday.csv").is_file() and sandbox.jobs(customer_id=1004) == []

            # the same file dropped again (same name, same bytes) after its import: filed as a duplicate
            write_csv(drops / "c1001" / "monday.csv", job_rows("MON1001", 30), age_s=5)
            wait_for(
                lambda: len(list((drops / "c1001" / "done").glob("*/monday*.duplicate.txt"))) == 1,
                120,
                "the second monday.csv filed as a duplicate",
                daemon,
            )
            assert len(sandbox.jobs(customer_id=1001)) == 35
            wait_for(lambda: all(r.is_finished for r in runs(instance)), 60, "every run finished", daemon)
            keys_before = sorted(r.tags.get("dagster/run_key", "") for r in runs(instance))
            count_before = len(keys_before)
        daemon.stop()

        # the sensors' state (with their cursors) deleted, the daemon restarted: no key runs twice
        with dg.DagsterInstance.get() as instance:
            for state in instance.all_instigator_state():
                instance.delete_instigator_state(state.instigator_origin_id, state.selector_id)
            assert list(instance.all_instigator_state()) == []
        daemon.start()
        with dg.DagsterInstance.get() as instance:
            wait_for(
                lambda: (
                    any(s.instigator_name.startswith("drops_") for s in instance.all_instigator_state())
                    and _ticks(instance) >= 2 * len(CUSTOMERS)
                ),
                120,
                "the sensors ticking again after the restart",
                daemon,
            )
            time.sleep(8)  # a queue poll or two: anything requested would be queued by now
            keys_after = sorted(r.tags.get("dagster/run_key", "") for r in runs(instance))
        assert len(keys_after) == count_before and keys_after == keys_before
        for customer, n in rows.items():
            assert len(sandbox.jobs(customer_id=customer)) == n + 5
        assert sandbox.stats()["duplicates"] == []
        assert (drops / "c1004" / "monday.csv").is_file()  # still waiting for its run to be re-executed
    finally:
        daemon.stop()


def _ticks(instance: dg.DagsterInstance) -> int:
    total = 0
    for state in instance.all_instigator_state():
        total += len(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50))
    return total
