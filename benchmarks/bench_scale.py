"""Benchmark at scale: a 1,000,000-row CSV imported end to end into the sandbox, then a 10-row file against the
ledger it left, side by side with a bare aiohttp loop in one invocation.

    .venv/bin/python benchmarks/bench_scale.py [--rows 1000000] [--concurrency 64] [--bare-rows N]
                                               [--profile] [--slow-callbacks-ms 20]

Against one sandbox subprocess (latency 0, no faults), ledgers in a temporary state home (JOBIMPORT_HOME):
  1. `jobimport run big.csv --max-concurrency 64` (lookups before send on: the command as a user runs it), in a
     child python that runs the command's own `pipeline.cli.main` with an event-loop policy whose loops start a
     probe task (public asyncio API, nothing in `pipeline/` patched): the probe sleeps 5 ms at a time and records
     how late it wakes — the event-loop lag every request also sees. Peak RSS (VmHWM) and CPU come from the child
     itself, with RSS sampled by phase, rows/s from the whole command's wall time;
  2. a 10-row file of new references against the ledger those rows left: the time from the process's start to the
     sandbox's first POST /v1/jobs (its `createdAt`, ms), and peak RSS; beside it the same 10-row run against an
     empty ledger (another state home, same sandbox), so what the big ledger costs is seen directly;
  3. the sandbox reset, then a bare aiohttp loop (one ClientSession, N workers, POST, check 201) sending the same
     payloads (from a dry run's payloads.jsonl) to the same sandbox.
Every run is checked: each reference created exactly once (the sandbox's counts).
Targets (issue 13): peak RSS ≤ 1.0 GB; loop lag p99 ≤ 5 ms, max ≤ 50 ms; 10-row run: first request ≤ 1 s after the
run starts, peak RSS ≤ 300 MB. rows/s is reported beside the bare loop (no target).

--profile runs the big import under cProfile (slower; for finding where the time goes); --slow-callbacks-ms N turns
on asyncio debug mode in the child and logs every callback that holds the loop longer than N ms (slower too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
PROBE_INTERVAL_S = 0.005

TARGET_RSS_MB = 1000.0
TARGET_LAG_P99_MS = 5.0
TARGET_LAG_MAX_MS = 50.0
TARGET_FIRST_REQUEST_S = 1.0
TARGET_SMALL_RSS_MB = 300.0


# --- the child: the jobimport command in-process, with a loop-lag probe ------------------------------------------


async def probe(record: dict[str, Any], started: float) -> None:
    """Sleep PROBE_INTERVAL_S at a time and record how late each wake-up comes (the loop's lag); runs until
    cancelled. Stalls over 50 ms are kept with their time since `started`."""
    lags: list[float] = record["lags"]
    stalls: list[tuple[float, float]] = record["stalls"]
    try:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(PROBE_INTERVAL_S)
            lag = max(0.0, time.perf_counter() - before - PROBE_INTERVAL_S)
            lags.append(lag)
            if lag > 0.05 and len(stalls) < 20_000:
                stalls.append((round(before - started, 3), round(lag * 1000, 1)))
    except asyncio.CancelledError:
        record["stopped_s"] = time.perf_counter() - started
        raise


async def probed(work: Any) -> tuple[Any, dict[str, float]]:
    """Await `work` with a probe on the same loop; its result and the lag summary."""
    record: dict[str, Any] = {"lags": [], "stalls": []}
    task = asyncio.create_task(probe(record, time.perf_counter()))
    try:
        return await work, summarise(record["lags"])
    finally:
        task.cancel()


def status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MB.

    VmHWM (peak RSS) rather than getrusage's ru_maxrss: Linux carries ru_maxrss across exec from the parent's
    memory at the fork, so a child of a parent holding 1M payloads would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class MemorySampler:
    """A thread that reads VmRSS every `every` seconds; at each new peak it notes what the main thread was doing
    (its innermost frames, via sys._current_frames), so the peak is pinned to a function."""

    def __init__(self, started: float, every: float = 0.25) -> None:
        import threading

        self.started = started
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.peak = 0.0
        self.at_peak: list[str] = []
        self.peak_s = 0.0
        self.jumps: list[tuple[float, float, str]] = []
        self.last_jump = 0.0
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import traceback

        while not self._stop.wait(self.every):
            rss = status_mb("VmRSS")
            if rss is None:
                return
            now = time.perf_counter() - self.started
            self.samples.append((round(now, 2), round(rss, 1)))
            if rss - self.last_jump > 20:  # where the main thread is when RSS grows by > 20 MB
                frame = sys._current_frames().get(self._main or 0)
                where = [f for f in traceback.extract_stack(frame) if "/pipeline/" in f.filename] if frame else []
                spot = f"{Path(where[-1].filename).name}:{where[-1].lineno} {where[-1].name}" if where else "?"
                self.jumps.append((round(now, 2), round(rss - self.last_jump), spot))
            self.last_jump = rss
            if rss > self.peak:
                self.peak, self.peak_s = rss, now
                frame = sys._current_frames().get(self._main or 0)
                stack = traceback.extract_stack(frame) if frame is not None else []
                self.at_peak = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-12:]]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0.0)


class GcTimes:
    """Durations of the cyclic garbage collector's passes (gc.callbacks), by generation: a full collection over
    a large heap holds the event loop like any other synchronous work."""

    def __init__(self) -> None:
        import gc

        self.durations: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.durations[info["generation"]].append(time.perf_counter() - self._start)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{gen}": {"count": len(d), "total_s": sum(d), "max_ms": max(d, default=0.0) * 1000}
            for gen, d in self.durations.items()
        }


def child_main(out: Path, argv: list[str], profile: Path | None, slow_ms: float | None) -> int:
    """Run `jobimport *argv` here; every event loop the command creates gets a probe task. Writes `out` (JSON)."""
    started_wall = time.time()
    started = time.perf_counter()
    loops: list[dict[str, Any]] = []

    class ProbedPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            if slow_ms is not None:
                loop.set_debug(True)
                loop.slow_callback_duration = slow_ms / 1000
            record: dict[str, Any] = {"created_s": time.perf_counter() - started, "lags": [], "stalls": []}
            loops.append(record)

            def start_probe() -> None:
                record["first_tick_s"] = time.perf_counter() - started
                loop.create_task(probe(record, started))

            loop.call_soon(start_probe)
            return loop

    asyncio.set_event_loop_policy(ProbedPolicy())
    memory = MemorySampler(started)
    collections = GcTimes()
    if slow_ms is not None:
        import logging

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="slow: %(message)s")
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    import pipeline.run  # noqa: F401 (what `run` imports first thing anyway: timed here as start-up)
    from pipeline.cli import main  # (imported after the clock started: part of the command's start-up)

    imported_s = time.perf_counter() - started

    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        code = profiler.runcall(main, argv)
        profiler.dump_stats(profile)
    else:
        code = main(argv)
    memory.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - started
    peak = status_mb("VmHWM")
    phases: dict[str, float] = {}
    # the command may run more than one loop (the tenant's reference data is fetched in its own asyncio.run before
    # the submit): the submit's loop is the one that ran longest, and it is listed first in the results
    loops.sort(key=lambda r: r.get("stopped_s", 0.0) - r.get("first_tick_s", 0.0), reverse=True)
    if loops and "stopped_s" in loops[0]:
        first, last = loops[0]["first_tick_s"], loops[0]["stopped_s"]
        phases = {
            "before_submit_mb": memory.peak_between(0, first),
            "during_submit_mb": memory.peak_between(first, last),
            "after_submit_mb": memory.peak_between(last, wall),
        }
    result = {
        "exit_code": code,
        "started_wall": started_wall,
        "wall_s": wall,
        "imported_s": imported_s,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": peak if peak is not None else usage.ru_maxrss / 1024,
        "sampled_peak_mb": memory.peak,
        "sampled_peak_s": memory.peak_s,
        "at_peak": memory.at_peak,
        "rss_jumps": memory.jumps,
        "rss_phases": phases,
        "gc": collections.summary(),
        "rss_samples": memory.samples[:: max(1, len(memory.samples) // 400)],
        "loops": [{**r, "lags": summarise(r["lags"]), "stalls": longest(r["stalls"])} for r in loops],
    }
    out.write_text(json.dumps(result), encoding="utf-8")
    return code


def idle_probe_main(out: Path) -> int:
    """A process doing nothing but the probe, until SIGTERM: the lag the machine's own load causes (scheduling
    delay on a shared box), measured beside each run as a control."""
    import signal

    record: dict[str, Any] = {"lags": [], "stalls": []}

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(probe(record, time.perf_counter()))
        await stop.wait()
        task.cancel()

    asyncio.run(run())
    out.write_text(json.dumps(summarise(record["lags"])), encoding="utf-8")
    return 0


class IdleProbe:
    """`with IdleProbe(path) as control:` a probe-only process runs meanwhile; `control.lag` after the block."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lag: dict[str, float] = {}

    def __enter__(self) -> IdleProbe:
        self.process = subprocess.Popen([sys.executable, str(HERE), "--idle-probe", str(self.out)])
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.out.exists():
            self.lag = json.loads(self.out.read_text(encoding="utf-8"))


def show_lag(lag: dict[str, float]) -> str:
    if not lag.get("samples"):
        return "no samples"
    return f"p50 {lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms, max {lag['max_ms']:.1f} ms"


def longest(stalls: list[tuple[float, float]], keep: int = 50) -> dict[str, Any]:
    """How many stalls over 50 ms, and the longest ones (time since start, ms)."""
    return {"count": len(stalls), "longest": sorted(stalls, key=lambda s: -s[1])[:keep]}


def summarise(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"samples": 0}
    ordered = sorted(lags)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {
        "samples": len(ordered),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": ordered[-1] * 1000,
        "over_20ms": sum(1 for lag in ordered if lag > 0.02),
        "total_over_5ms_s": sum(lag for lag in ordered if lag > 0.005),
    }


# --- the parent --------------------------------------------------------------------------------------------------


def probed_run(
    argv: list[str], env: dict[str, str], work: Path, name: str, profile: bool = False, slow_ms: float | None = None
) -> dict[str, Any]:
    """`jobimport *argv` in a probed child; the child's report plus the wall time seen from here."""
    out = work / f"{name}.json"
    command = [sys.executable, str(HERE), "--child", str(out)]
    if profile:
        command += ["--child-profile", str(work / f"{name}.prof")]
    if slow_ms is not None:
        command += ["--slow-callbacks-ms", str(slow_ms)]
    popen_wall = time.time()
    started = time.perf_counter()
    done = subprocess.run([*command, "--", *argv], env={**os.environ, **env}, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"jobimport {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}")
    report = json.loads(out.read_text(encoding="utf-8"))
    report.update(popen_wall=popen_wall, outer_wall_s=wall, stdout=done.stdout, stderr=done.stderr)
    return report


def dry_run(source: Path, mapping: Path, work: Path) -> Path:
    """payloads.jsonl of `jobimport validate`: the payloads exactly as planned."""
    folder = work / "dry"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "validate",
            str(source),
            "--mapping",
            str(mapping),
            "--report-dir",
            str(folder),
        ],
        cwd=work,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"dry run failed:\n{done.stdout}\n{done.stderr}")
    return next(folder.glob("*/payloads.jsonl"))


def read_bodies(path: Path, limit: int | None) -> list[bytes]:
    """The payloads of payloads.jsonl as request bodies (read only when the bare loop needs them: a parent
    holding them would be counted in its children's peak RSS by anything that reads ru_maxrss)."""
    marker = b',"payload":'
    bodies = []
    with path.open("rb") as handle:
        for line in handle:
            if limit is not None and len(bodies) >= limit:
                break
            bodies.append(line[line.index(marker) + len(marker) : line.rindex(b"}")])
    return bodies


def created_at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def small_run(
    sandbox: Any, work: Path, mapping: Path, home: Path, prefix: str, label: str, rows: int = 10
) -> dict[str, Any]:
    from bench_submit import write_csv

    source = write_csv(work / f"{label}.csv", rows, prefix)
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(home)}
    argv = ["run", str(source), "--mapping", str(mapping), "--report-dir", str(work / f"rep-{label}")]
    report = probed_run(argv, env, work, label)
    references = [f"{prefix}-{i + 1:07d}" for i in range(rows)]
    jobs = sandbox.jobs(*references)
    if sorted(job["reference"] for job in jobs) != references:
        raise SystemExit(f"{label}: not every reference created exactly once: {[j['reference'] for j in jobs]}")
    first_post = min(created_at(job["createdAt"]) for job in jobs)
    report["first_request_s"] = first_post - report["popen_wall"]
    report["first_tick_from_start_s"] = (
        min(loop["first_tick_s"] for loop in report["loops"] if "first_tick_s" in loop) if report["loops"] else None
    )
    report["child_start_s"] = report["started_wall"] - report["popen_wall"]
    return report


def ok(flag: bool) -> str:
    return "OK" if flag else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bare-rows", type=int, help="rows the bare loop sends (default: all of them)")
    parser.add_argument("--profile", action="store_true", help="the big import under cProfile (top functions shown)")
    parser.add_argument("--slow-callbacks-ms", type=float, help="asyncio debug: log callbacks slower than this")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--idle-probe", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.idle_probe is not None:
        raise SystemExit(idle_probe_main(args.idle_probe))
    if args.child is not None:
        raise SystemExit(
            child_main(args.child, rest[1:] if rest[:1] == ["--"] else rest, args.child_profile, args.slow_callbacks_ms)
        )

    sys.path.insert(0, str(ROOT))
    from bench_submit import aiohttp_loop, check_once, write_input

    from pipeline.sandbox.process import SandboxProcess

    rows = args.rows
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}; {rows:,} rows, work folder {work}")
    source, mapping = write_input(work, rows)
    payloads = dry_run(source, mapping, work)
    home = work / "home"
    report: dict[str, Any] = {"rows": rows, "concurrency": args.concurrency, "load_before": os.getloadavg()}

    with SandboxProcess(latency_ms=0) as sandbox:
        env = {**sandbox.env(), "JOBIMPORT_HOME": str(home)}
        argv = ["run", str(source), "--mapping", str(mapping), "--report-dir", str(work / "rep-big")]
        argv += ["--max-concurrency", str(args.concurrency)]
        print(f"{time.strftime('%H:%M:%S')} jobimport run, {rows:,} rows, conc {args.concurrency} …", flush=True)
        with IdleProbe(work / "idle-big.json") as control:
            big = probed_run(argv, env, work, "big", profile=args.profile, slow_ms=args.slow_callbacks_ms)
        check_once(sandbox, rows)
        rate = rows / big["outer_wall_s"]
        lag = big["loops"][0]["lags"] if big["loops"] else {}
        report["run"] = {k: v for k, v in big.items() if k not in ("stdout", "stderr")}
        report["run"]["rows_per_s"] = rate
        print(big["stdout"].strip())
        if args.slow_callbacks_ms is not None:
            slow = [line for line in big["stderr"].splitlines() if line.startswith("slow:")]
            print(f"  {len(slow)} slow callbacks; the first 30:")
            print("\n".join("    " + line[:300] for line in slow[:30]))
        print(
            f"  jobimport run: {big['outer_wall_s']:.1f} s, {rate:,.0f} rows/s (whole command), "
            f"client CPU {big['cpu_s'] / rows * 1000:.3f} ms/row, peak RSS {big['maxrss_mb']:,.0f} MB "
            f"=> {ok(big['maxrss_mb'] <= TARGET_RSS_MB)} (target ≤ {TARGET_RSS_MB:,.0f} MB)"
        )
        collected = big["gc"]
        print(
            "  garbage collector in the command: "
            + "; ".join(
                f"{gen} {c['count']}× {c['total_s']:.2f} s in all, longest {c['max_ms']:.0f} ms"
                for gen, c in collected.items()
            )
        )
        phases = big["rss_phases"]
        if phases:
            print(
                f"  RSS peaks by phase (sampled every 0.25 s): read/plan {phases['before_submit_mb']:,.0f} MB, "
                f"submit {phases['during_submit_mb']:,.0f} MB, after the submit (outcomes, reports, ledger) "
                f"{phases['after_submit_mb']:,.0f} MB; the main thread at the sampled peak "
                f"({big['sampled_peak_mb']:,.0f} MB at {big['sampled_peak_s']:.1f} s):"
            )
            print("\n".join("    " + frame for frame in big["at_peak"]))
            jumps = ", ".join(f"+{mb:.0f} MB at {at:.1f} s in {spot}" for at, mb, spot in big["rss_jumps"])
            print(f"  RSS growth over 20 MB between two samples (innermost pipeline frame): {jumps}")
        if lag.get("samples"):
            lag_ok = lag["p99_ms"] <= TARGET_LAG_P99_MS and lag["max_ms"] <= TARGET_LAG_MAX_MS
            print(
                f"  event-loop lag ({lag['samples']:,} probes of {PROBE_INTERVAL_S * 1000:.0f} ms): p50 "
                f"{lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms, p99.9 {lag['p999_ms']:.1f} ms, max "
                f"{lag['max_ms']:.1f} ms, {lag['over_20ms']} over 20 ms => {ok(lag_ok)} (targets p99 ≤ "
                f"{TARGET_LAG_P99_MS:.0f} ms, max ≤ {TARGET_LAG_MAX_MS:.0f} ms)"
            )
            print(f"  control, an idle process probing meanwhile (machine load): {show_lag(control.lag)}")
            report["run"]["idle_process_lag"] = control.lag
            stalls = big["loops"][0]["stalls"]
            if stalls["count"]:
                shown = ", ".join(f"{ms:.0f} ms at {at:.1f} s" for at, ms in stalls["longest"][:10])
                print(f"  {stalls['count']} stalls over 50 ms; the longest (since process start): {shown}")
            print(
                f"  submit loop ran from {big['loops'][0]['first_tick_s']:.1f} s "
                f"to {big['loops'][0]['stopped_s']:.1f} s"
            )
        if args.profile:
            import pstats

            stats = pstats.Stats(str(work / "big.prof"))
            stats.sort_stats("tottime").print_stats(25)

        for label, state_home, prefix in (
            ("small-big-ledger", home, "S"),
            ("small-empty-ledger", work / "home-empty", "E"),
        ):
            small = small_run(sandbox, work, mapping, state_home, prefix, label)
            report[label] = {k: v for k, v in small.items() if k not in ("stdout", "stderr")}
            print(
                f"  10 rows, {label.removeprefix('small-').replace('-', ' ')}: first request "
                f"{small['first_request_s']:.2f} s after the process started "
                f"(the child's python up at {small['child_start_s']:.2f} s; from there imports done at "
                f"{small['imported_s']:.2f} s, event loop started at {small['first_tick_from_start_s']:.2f} s), "
                "whole command "
                f"{small['outer_wall_s']:.2f} s, peak RSS {small['maxrss_mb']:.0f} MB"
            )
        small = report["small-big-ledger"]
        print(
            f"  => 10 rows against the {rows:,}-row ledger: first request {small['first_request_s']:.2f} s "
            f"{ok(small['first_request_s'] <= TARGET_FIRST_REQUEST_S)} (target ≤ {TARGET_FIRST_REQUEST_S:.0f} s), "
            f"peak RSS {small['maxrss_mb']:.0f} MB {ok(small['maxrss_mb'] <= TARGET_SMALL_RSS_MB)} "
            f"(target ≤ {TARGET_SMALL_RSS_MB:.0f} MB)"
        )

        sample = read_bodies(payloads, args.bare_rows)
        assert len(sample) == min(rows, args.bare_rows or rows), len(sample)
        sandbox.reset()
        print(
            f"{time.strftime('%H:%M:%S')} bare aiohttp loop, {len(sample):,} rows, conc {args.concurrency} …",
            flush=True,
        )
        before = resource.getrusage(resource.RUSAGE_SELF)
        with IdleProbe(work / "idle-bare.json") as bare_control:
            bare, bare_lag = asyncio.run(probed(aiohttp_loop(sandbox, sample, args.concurrency)))
        after = resource.getrusage(resource.RUSAGE_SELF)
        check_once(sandbox, len(sample))
        bare_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        report["bare_aiohttp"] = {
            "rows": len(sample),
            "rows_per_s": bare,
            "cpu_ms_per_row": bare_cpu / len(sample) * 1000,
            "lag": bare_lag,
            "idle_process_lag": bare_control.lag,
        }
        print(
            f"  bare aiohttp loop: {bare:,.0f} rows/s ({len(sample):,} rows), client CPU "
            f"{bare_cpu / len(sample) * 1000:.3f} ms/row, its loop's lag p50 {bare_lag.get('p50_ms', 0):.2f} ms, "
            f"p99 {bare_lag.get('p99_ms', 0):.2f} ms, max {bare_lag.get('max_ms', 0):.1f} ms"
        )
        print(f"  control, an idle process probing meanwhile: {show_lag(bare_control.lag)}")
        print(f"  => jobimport run = {rate / bare:.2f}× the bare aiohttp loop in rows/s")
    report["load_after"] = os.getloadavg()
    print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}")
    (work / "bench_scale.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"details: {work / 'bench_scale.json'}")


if __name__ == "__main__":
    main()
