"""Benchmark of many tenants' drops: 20 tenants × 500 rows dropped at once into one sandbox hosting them all
(`--customers`) at 50 ms latency, imported (1) by one `jobimport drop` pass per tenant, one after another, and
(2) by Dagster: a real `dagster-daemon` on deploy/dagster/ (sensor per tenant, one run per file, 4 runs at once,
one per tenant), in one run of this script.

    .venv/bin/python benchmarks/bench_orchestrate.py [--tenants 20] [--rows 500] [--latency-ms 50] [--runs 4]

Both phases start from an empty sandbox (reset between them) and empty ledgers (a state home each); the wall time
runs from the moment the files land in the folders until every file is filed. Checked after each phase: every
tenant has exactly its rows as jobs, the sandbox saw no duplicate reference, every file is in done/. The
orchestrator's overhead per file is taken from Dagster's run records and the import's own summary.json:
file dropped → run created (the sensor tick that requested it), run created → run launched (the queue), run
launched → the import started (the run worker's start-up), and created → import started for the first runs (no
queue in front of them). Needs `pip install "jobimport[dagster]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from pipeline.sandbox.process import SandboxProcess  # noqa: E402

MAPPING = """
[source]
delimiter = ","
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
[fields.reference]
column = "Ref"
[fields.description]
column = "Notes"
"""


def write_file(path: Path, prefix: str, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["Ref,Type,Customer,Notes"]
    lines += [f"{prefix}-{i + 1:05d},101,{5001 + i % 20},Visit {i + 1}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def drop_all(staging: Path, folders: dict[int, Path]) -> float:
    """Move every staged file into its tenant's folder (a rename each: the files land at once)."""
    for customer, folder in folders.items():
        os.replace(staging / f"c{customer}.csv", folder / "night.csv")
    return time.time()


def check(sandbox: SandboxProcess, folders: dict[int, Path], rows: int) -> tuple[int, bool]:
    per_tenant = {c: len(sandbox.jobs(customer_id=c)) for c in folders}
    duplicates = sandbox.stats()["duplicates"]
    filed = all(list((f / "done").glob("*/night.csv")) and not (f / "night.csv").exists() for f in folders.values())
    wrong = {c: n for c, n in per_tenant.items() if n != rows}
    assert not wrong, f"tenants without exactly {rows} jobs: {wrong}"
    return len(duplicates), filed


def env_file(root: Path, sandbox: SandboxProcess, customer: int) -> Path:
    path = root / "env" / f"c{customer}.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    env = sandbox.env(customer)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k != "BIGCHANGE_CLIENT_SECRET"), encoding="utf-8")
    return path


def sequential(sandbox: SandboxProcess, root: Path, customers: list[int], rows: int) -> dict[str, Any]:
    staging, mapping = root / "staging", root / "mapping.toml"
    folders = {c: root / "drops" / f"c{c}" for c in customers}
    for c, folder in folders.items():
        folder.mkdir(parents=True)
        write_file(staging / f"c{c}.csv", f"SEQ{c}", rows)
    home = root / "state"
    started = drop_all(staging, folders)
    for c, folder in folders.items():
        env = {**os.environ, **sandbox.env(c), "JOBIMPORT_HOME": str(home)}
        done = subprocess.run(
            [str(BIN / "jobimport"), "drop", str(folder), "--mapping", str(mapping), "--settle", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    wall = time.time() - started
    duplicates, filed = check(sandbox, folders, rows)
    return {"wall_s": wall, "duplicates": duplicates, "filed": filed}


def dagster(sandbox: SandboxProcess, root: Path, customers: list[int], rows: int, runs: int) -> dict[str, Any]:
    import dagster as dg

    staging, mapping = root / "staging", root / "mapping.toml"
    folders = {c: root / "drops" / f"c{c}" for c in customers}
    lines = ["[defaults]", "settle_s = 0", "interval_s = 1", "local_ledger = true", "retry_wait_s = 5"]
    lines.append('env = { BIGCHANGE_CLIENT_SECRET = "BENCH_CLIENT_SECRET" }')
    for c, folder in folders.items():
        folder.mkdir(parents=True)
        write_file(staging / f"c{c}.csv", f"DAG{c}", rows)
        lines += ["[[tenant]]", f'name = "c{c}"', f"folder = '{folder.as_posix()}'"]
        lines.append(f"mapping = '{mapping.as_posix()}'")
        lines.append(f"env_file = '{env_file(root, sandbox, c).as_posix()}'")
    tenants = root / "tenants.toml"
    tenants.write_text("\n".join(lines) + "\n", encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir()
    config = (ROOT / "deploy" / "dagster" / "dagster.yaml").read_text(encoding="utf-8")
    (home / "dagster.yaml").write_text(config.replace("max_concurrent_runs: 4", f"max_concurrent_runs: {runs}"))
    secret = sandbox.env()["BIGCHANGE_CLIENT_SECRET"]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "JOBIMPORT_TENANTS": str(tenants),
        "JOBIMPORT_HOME": str(root / "state"),
        "BENCH_CLIENT_SECRET": secret,
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)
    log = (home / "daemon.log").open("wb")
    daemon_started = time.time()
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "deploy" / "dagster" / "workspace.yaml")],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            deadline = time.time() + 180
            while len(list(instance.all_instigator_state())) < len(customers):  # every sensor has ticked once
                assert time.time() < deadline and daemon.poll() is None, "the daemon's sensors never ticked"
                time.sleep(0.5)
            ready_s = time.time() - daemon_started
            time.sleep(2)
            started = drop_all(staging, folders)
            deadline = started + 900
            while True:
                found = list(instance.get_runs())
                if len(found) == len(customers) and all(r.is_finished for r in found):
                    break
                assert time.time() < deadline and daemon.poll() is None, "the runs did not finish in 15 min"
                time.sleep(0.5)
            wall = time.time() - started
            failed = [r.run_id for r in found if r.status != dg.DagsterRunStatus.SUCCESS]
            assert not failed, f"runs failed: {failed}"
            overheads = [_overhead(instance, r, started) for r in found]
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
        os.environ.pop("DAGSTER_HOME", None)
    duplicates, filed = check(sandbox, folders, rows)
    overheads.sort(key=lambda o: o["created"])
    return {
        "wall_s": wall,
        "duplicates": duplicates,
        "filed": filed,
        "daemon_ready_s": ready_s,
        "detect_s": [o["detect"] for o in overheads],
        "queue_s": [o["queue"] for o in overheads],
        "launch_s": [o["launch"] for o in overheads],
        "tick_to_import_first_s": [o["tick_to_import"] for o in overheads[:runs]],
        "import_s": [o["import"] for o in overheads],
        "run_s": [o["run"] for o in overheads],
    }


def _overhead(instance: Any, run: Any, dropped_at: float) -> dict[str, float]:
    import dagster as dg

    record = instance.get_run_record_by_id(run.run_id)
    created = record.create_timestamp.timestamp()
    starting = next(
        e.timestamp
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_STARTING
    )
    step = next(
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_OUTPUT
    )
    reports = step.dagster_event.step_output_data.metadata["reports"].value
    summary = json.loads((Path(reports) / "summary.json").read_text(encoding="utf-8"))
    import_started = datetime.fromisoformat(summary["started_at"]).timestamp()
    ended = record.end_time or starting
    return {
        "import": float(summary["duration_s"]),
        "run": ended - starting,
        "created": created,
        "detect": created - dropped_at,
        "queue": starting - created,
        "launch": import_started - starting,
        "tick_to_import": import_started - created,
    }


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered):.1f} s, p90 {p90:.1f} s, max {ordered[-1]:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=4, help="Dagster runs at once (max_concurrent_runs)")
    args = parser.parse_args()
    customers = [2001 + i for i in range(args.tenants)]
    total = args.tenants * args.rows
    print(f"{args.tenants} tenants × {args.rows} rows = {total} rows, {args.latency_ms:g} ms; {args.runs} runs at once")
    root = Path(tempfile.mkdtemp(prefix="bench_orchestrate-"))
    try:
        with SandboxProcess(customers=tuple(customers), latency_ms=args.latency_ms) as sandbox:
            results = {}
            for label, phase in (("one drop pass per tenant, one after another", "seq"), ("dagster", "dag")):
                sandbox.reset()
                folder = root / phase
                folder.mkdir()
                (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
                if phase == "seq":
                    result = sequential(sandbox, folder, customers, args.rows)
                else:
                    result = dagster(sandbox, folder, customers, args.rows, args.runs)
                results[phase] = result
                print(
                    f"{label}: {result['wall_s']:.1f} s, {total / result['wall_s']:.0f} rows/s, "
                    f"{result['duplicates']} duplicates, every file filed: {result['filed']}"
                )
            dag = results["dag"]
            print(f"dagster: daemon up, every sensor ticked, in {dag['daemon_ready_s']:.1f} s (not in the wall time)")
            print(f"  file dropped → run created (sensor tick): {spread(dag['detect_s'])}")
            print(f"  run created → launched (queue, {args.runs} at once, one per tenant): {spread(dag['queue_s'])}")
            print(f"  run launched → import started (run worker start-up): {spread(dag['launch_s'])}")
            print(
                f"  sensor tick → import started, first {args.runs} runs (no queue): "
                f"{spread(dag['tick_to_import_first_s'])}"
            )
            print(f"  the import itself (summary.json duration): {spread(dag['import_s'])}")
            print(f"  a run, launched → ended: {spread(dag['run_s'])}")
            print(f"speed-up of dagster over one pass after another: {results['seq']['wall_s'] / dag['wall_s']:.2f}×")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
