"""Benchmark of `jobimport tenant pull`: a sandbox tenant of 25,000 contacts and 60,000 persons at 50 ms latency.

    .venv/bin/python benchmarks/bench_refdata.py [--contacts 25000] [--persons 60000] [--latency-ms 50]
                                                 [--concurrency 8] [--repeat 3]

Generates the tenant (`python -m pipeline.sandbox.data`), starts the sandbox with `--data` and the latency, and
times the pull of every job type, contact and person (`--all-persons`) through the importer's own client:
concurrently (page 1 alone, then a window of workers) against the same code with a window of one, i.e. the pages
fetched one after another. Request counts come from the sandbox's own /_sandbox/stats; each pull's result is
checked complete (every contact and person of the generated file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import logs
from pipeline.sandbox.data import generate_reference_data
from pipeline.sandbox.process import SandboxProcess
from pipeline.settings import load_settings
from pipeline.tenant import pull


def requests_of(stats: dict[str, object]) -> int:
    counted = stats["requests"]
    assert isinstance(counted, dict)
    return sum(n for path, by_status in counted.items() if path.startswith("GET") for n in by_status.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=25_000)
    parser.add_argument("--persons", type=int, default=60_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    logs.configure(None)
    folder = Path(tempfile.mkdtemp(prefix="bench_refdata-"))
    data_file = folder / "tenant.json"
    doc = generate_reference_data(args.contacts, args.persons)
    data_file.write_text(json.dumps(doc), encoding="utf-8")
    expected = (len(doc["jobTypes"]), len(doc["contacts"]), len(doc["persons"]))
    print(f"tenant: {expected[0]} job types, {expected[1]} contacts, {expected[2]} persons; {args.latency_ms:g} ms")

    with SandboxProcess(data=data_file, latency_ms=args.latency_ms) as sandbox:
        settings = load_settings(None, environ={**os.environ, **sandbox.env()})
        results: dict[str, list[tuple[float, int]]] = {}
        for label, window in (("concurrent", args.concurrency), ("one after another", 1)):
            for _ in range(args.repeat):
                before = requests_of(sandbox.stats())
                started = time.perf_counter()
                data, _ = pull(settings, all_persons=True, home=folder / "home", concurrency=window)
                seconds = time.perf_counter() - started
                got = (len(data.job_types), len(data.contacts), len(data.persons))
                assert got == expected, f"{label}: pulled {got}, expected {expected}"
                requests = requests_of(sandbox.stats()) - before
                results.setdefault(label, []).append((seconds, requests))
                print(f"  {label:>17} (window {window}): {seconds:6.2f} s, {requests} GET requests")
    concurrent = statistics.median(s for s, _ in results["concurrent"])
    sequential = statistics.median(s for s, _ in results["one after another"])
    print(
        f"median: concurrent {concurrent:.2f} s ({results['concurrent'][0][1]} requests) vs one after another "
        f"{sequential:.2f} s ({results['one after another'][0][1]} requests): {sequential / concurrent:.1f}x faster"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
