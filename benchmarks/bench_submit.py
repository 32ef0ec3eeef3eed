"""Benchmark of submission: `jobimport run` end to end against bare client loops, side by side in one run.

    .venv/bin/python benchmarks/bench_submit.py [--rows 20000] [--latency-ms 50] [--sequential-rows 300]

Against one sandbox subprocess (50 ms latency, no faults), with the same payloads (planned once by a dry run):
  1. `jobimport run` as a user runs it (subprocess: read, validate, ledger, logs, reports), --max-concurrency 32
     and 128; rows/s over the whole command and the client's CPU time per row;
  2. a bare async loop: one httpx.AsyncClient, N workers, no ledger/logs/reports — with httpx's own pool (on
     at most 3,000 rows: it collapses at high concurrency) and with the aiohttp transport (how it was chosen);
  3. a plain sequential loop (one request at a time), on fewer rows;
  4. `jobimport run` against the sandbox rate-limited to 200 req/s: sustained rows/s and the share of 429s.
Every run is checked: each reference created exactly once (the sandbox's counts).
Targets (issue 4): run ≥ 0.9 × the bare loop at concurrency 32; rate-limited ≥ 0.9 × 200 rows/s, 429s < 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.sandbox.process import SandboxProcess  # noqa: E402

MAPPING = """
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
[fields.reference]
column = "Ref"
[fields.description]
column = "Notes"
[custom_fields]
"Access Code" = 432632
"""


def write_input(folder: Path, rows: int) -> tuple[Path, Path]:
    source = folder / "jobs.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Ref", "Type", "Customer", "Notes", "Access Code"])
        for i in range(rows):
            writer.writerow([f"B-{i + 1:06d}", 101, 5001 + i % 20, f"Benchmark visit {i + 1}", f"{i % 10000:04d}"])
    mapping = folder / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return source, mapping


def cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds and CPU seconds (user+sys) of one `jobimport` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"jobimport {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return wall, cpu, done


def check_once(sandbox: SandboxProcess, rows: int) -> None:
    stats = sandbox.stats()
    per_ref = stats["creations_per_reference"]
    if stats["duplicates"] or len(per_ref) != rows or any(n != 1 for n in per_ref.values()):
        raise SystemExit(f"not created exactly once: {len(per_ref)} references, duplicates {stats['duplicates'][:5]}")


def token_form(env: dict[str, str]) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": env["BIGCHANGE_CLIENT_ID"],
        "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
    }


def run_command(source: Path, mapping: Path, report_dir: Path, concurrency: int) -> list[str]:
    options = ["--report-dir", str(report_dir), "--max-concurrency", str(concurrency)]
    return ["run", str(source), "--mapping", str(mapping), *options]


async def bare_loop(sandbox: SandboxProcess, bodies: list[bytes], concurrency: int, transport: str) -> float:
    """rows/s of the simplest correct client: a token, N workers pulling from a queue, POST, check 201."""
    env = sandbox.env()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        chosen: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits)
    else:
        chosen = httpx.AsyncHTTPTransport(limits=limits)
    async with httpx.AsyncClient(transport=chosen, timeout=httpx.Timeout(30, pool=None)) as client:
        token = (await client.post(env["BIGCHANGE_TOKEN_URL"], data=token_form(env))).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "Customer-Id": env["BIGCHANGE_CUSTOMER_ID"],
            "Content-Type": "application/json",
        }
        url = env["BIGCHANGE_BASE_URL"] + "/jobs"
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 201:
                    raise SystemExit(f"bare loop got {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


def payload_bodies(source: Path, mapping: Path, work: Path) -> list[bytes]:
    cli(["validate", str(source), "--mapping", str(mapping), "--report-dir", str(work / "dry")], {}, work)
    run_dir = next((work / "dry").iterdir())
    lines = (run_dir / "payloads.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.dumps(json.loads(line)["payload"], separators=(",", ":")).encode() for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--sequential-rows", type=int, default=300)
    parser.add_argument("--rate-limit", type=float, default=200.0)
    parser.add_argument("--skip-rate-limit", action="store_true")
    args = parser.parse_args()
    rows = args.rows
    work = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    source, mapping = write_input(work, rows)
    bodies = payload_bodies(source, mapping, work)
    assert len(bodies) == rows
    report: dict[str, Any] = {"rows": rows, "latency_ms": args.latency_ms}
    print(f"{rows} rows, sandbox latency {args.latency_ms:.0f} ms; theoretical rows/s = concurrency / latency")

    with SandboxProcess(latency_ms=args.latency_ms) as sandbox:
        for concurrency in (32, 128):
            limit = concurrency / (args.latency_ms / 1000)
            for transport in ("httpx", "aiohttp"):
                sandbox.reset()
                # httpx's own pool collapses at high concurrency: a sample of rows is enough to show it.
                sample = bodies if transport == "aiohttp" else bodies[: min(rows, 3000)]
                rate = asyncio.run(bare_loop(sandbox, sample, concurrency, transport))
                check_once(sandbox, len(sample))
                report[f"bare_{transport}_{concurrency}"] = rate
                print(f"  bare loop, {transport:7} transport, conc {concurrency:3}: {rate:7.0f} rows/s", end="")
                print(f" ({rate / limit:.0%} of limit)")
            sandbox.reset()
            ledger_dir = work / f"run-{concurrency}"
            wall, cpu, _done = cli(run_command(source, mapping, ledger_dir, concurrency), sandbox.env(), work)
            check_once(sandbox, rows)
            rate = rows / wall
            summary = json.loads(next(ledger_dir.glob("*/summary.json")).read_text())
            send_rate = summary["throughput_rows_per_s"]
            bare = report[f"bare_aiohttp_{concurrency}"]
            report[f"run_{concurrency}"] = {"rows_per_s": rate, "cpu_ms_per_row": cpu / rows * 1000}
            print(
                f"  jobimport run (whole command),     conc {concurrency:3}: {rate:7.0f} rows/s "
                f"({rate / limit:.0%} of limit, {rate / bare:.2f}× bare aiohttp loop); "
                f"client CPU {cpu / rows * 1000:.2f} ms/row; summary throughput {send_rate:.0f}/s"
            )
        sandbox.reset()
        started = time.perf_counter()
        with httpx.Client(timeout=30) as client:
            env = sandbox.env()
            token = client.post(env["BIGCHANGE_TOKEN_URL"], data=token_form(env)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "Customer-Id": env["BIGCHANGE_CUSTOMER_ID"]}
            for body in bodies[: args.sequential_rows]:
                response = client.post(
                    env["BIGCHANGE_BASE_URL"] + "/jobs",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert response.status_code == 201, response.text
        seq = args.sequential_rows / (time.perf_counter() - started)
        report["sequential"] = seq
        print(f"  plain sequential loop ({args.sequential_rows} rows):      {seq:7.0f} rows/s")
        ratio = report["run_32"]["rows_per_s"] / report["bare_aiohttp_32"]
        print(f"=> jobimport run ÷ bare loop at 32: {ratio:.2f} (target ≥ 0.90) {'OK' if ratio >= 0.9 else 'MISSED'}")

    if not args.skip_rate_limit:
        with SandboxProcess(latency_ms=args.latency_ms, rate_limit=args.rate_limit) as sandbox:
            ledger_dir = work / "run-limited"
            wall, cpu, _done = cli(run_command(source, mapping, ledger_dir, 32), sandbox.env(), work)
            check_once(sandbox, rows)
            stats = sandbox.stats()
            posts = sum(stats["requests"]["POST /v1/jobs"].values())
            throttled = stats["requests"]["POST /v1/jobs"].get("429", 0)
            rate = rows / wall
            share = throttled / posts
            ok = rate >= 0.9 * args.rate_limit and share < 0.05
            print(
                f"  rate-limited {args.rate_limit:.0f} req/s: {rate:.0f} rows/s sustained over the whole command "
                f"({rate / args.rate_limit:.2f}× the limit), {throttled} 429s = {share:.1%} of {posts} requests "
                f"=> {'OK' if ok else 'MISSED'} (targets ≥ 0.90×, < 5%)"
            )
            report["rate_limited"] = {"rows_per_s": rate, "share_429": share}
    (work / "bench_submit.json").write_text(json.dumps(report, indent=1))
    print(f"details: {work / 'bench_submit.json'}")


if __name__ == "__main__":
    main()
