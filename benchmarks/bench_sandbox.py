"""Benchmark of the sandbox server: N job creations through plain aiohttp with C requests in flight.

    .venv/bin/python benchmarks/bench_sandbox.py [--jobs 20000] [--concurrency 64]

Starts the sandbox (latency 0, no faults) as a subprocess, creates the jobs, checks that every one was created
exactly once (the sandbox's own counts), and prints creates/s and the ratio to the 2,000/s target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.sandbox.process import SandboxProcess

TARGET = 2000.0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), to see the server's own cost per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def drive(
    base_url: str, token_url: str, env: dict[str, str], jobs: int, concurrency: int
) -> tuple[float, dict[int, int]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        form = {
            "grant_type": "client_credentials",
            "client_id": env["BIGCHANGE_CLIENT_ID"],
            "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
        }
        async with session.post(token_url, data=form) as answer:
            token = (await answer.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Customer-Id": env["BIGCHANGE_CUSTOMER_ID"]}
        url = f"{base_url}/jobs"
        statuses: dict[int, int] = {}
        queue = iter(range(jobs))

        async def worker() -> None:
            for n in queue:
                body = {
                    "typeId": 101,
                    "contactId": 5001 + n % 20,
                    "reference": f"BENCH-{n:07d}",
                    "description": "benchmark job",
                    "plannedDuration": 60,
                    "customFields": [{"definitionId": 432632, "value": "1234"}],
                }
                async with session.post(url, json=body, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with SandboxProcess(latency_ms=0) as sandbox:
        cpu_before = cpu_seconds(sandbox.pid)
        elapsed, statuses = asyncio.run(
            drive(sandbox.base_url, sandbox.token_url, sandbox.env(), args.jobs, args.concurrency)
        )
        cpu_after = cpu_seconds(sandbox.pid)
        stats = sandbox.stats()
    rate = args.jobs / elapsed
    print(
        f"{args.jobs} creates, {args.concurrency} in flight: {elapsed:.2f} s, {rate:,.0f} creates/s "
        f"({rate / TARGET:.2f} x the {TARGET:,.0f}/s target); statuses {statuses}"
    )
    if cpu_before is not None and cpu_after is not None:
        per_create = (cpu_after - cpu_before) / args.jobs * 1e6
        print(f"sandbox CPU: {per_create:.0f} us per create (one core could serve {1e6 / per_create:,.0f}/s)")
    ok = statuses == {201: args.jobs} and stats["jobs_created"] == args.jobs and not stats["duplicates"]
    if not ok:
        print(f"MISMATCH: sandbox counted {stats['jobs_created']} creations, duplicates {stats['duplicates'][:5]}")
    return 0 if ok and rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
