"""`jobimport status FILE`: one sign-off per original file, across every round of corrections.

A file's *family* is every run of the original file (by path or content) and every run of a corrections file
written by one of them, round after round. The link from a corrections file to the run that wrote it is
`corrected_run`: the `jobimport run` property written into every corrections.xlsx (kept when the workbook is
edited, renamed or copied, e.g. into a drop folder), else the report folder it still sits in
(`reports/<run-id>/corrections.csv`). Each run records it in its summary (`corrects_run`).

Each original row's final outcome: created (or already created) in any round, with its job id; else its status
in the latest round that had it, with that round's message. The verdict: done, or n rows need attention.
"""

from __future__ import annotations

import csv
import html
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.model import SUCCESS

#: the custom document property of corrections.xlsx naming the run that wrote it
RUN_PROPERTY = "jobimport run"
RUN_ID = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{4}$")
SIGNOFF_CSV = "signoff.csv"
_PROPERTY = re.compile(
    r'<property[^>]*name="' + re.escape(RUN_PROPERTY) + r'"[^>]*>\s*<vt:lpwstr>([^<]*)</vt:lpwstr>', re.S
)


def corrected_run(path: Path) -> str | None:
    """The run that wrote corrections file `path` (see the module docstring); None when it cannot be told."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            with zipfile.ZipFile(path) as archive:
                text = archive.read("docProps/custom.xml").decode("utf-8", "replace")
        except (OSError, KeyError, zipfile.BadZipFile):
            text = ""
        found = _PROPERTY.search(text)
        if found and RUN_ID.match(found.group(1)):
            return found.group(1)
    parent = path.resolve().parent.name
    return parent if RUN_ID.match(parent) else None


@dataclass(frozen=True)
class Round:
    """One run of the family, as the ledger keeps it."""

    run_id: str
    input: str
    started_at: str
    summary: dict[str, Any]
    rows: list[tuple[int, int, str | None, str, int | None, str | None, str | None]]
    errors: dict[int, str]  # row → first message
    kept: bool  # the ledger still has its per-row outcomes


@dataclass(frozen=True)
class RowOutcome:
    origin_row: int
    status: str
    job_id: int | None
    run_id: str
    input: str
    message: str


@dataclass
class SignOff:
    original: str
    rounds: list[Round]
    rows: list[RowOutcome] = field(default_factory=list)
    report_dir: Path | None = None
    csv_path: Path | None = None

    @property
    def open_rows(self) -> list[RowOutcome]:
        return [r for r in self.rows if r.status not in SUCCESS]

    @property
    def done(self) -> bool:
        return bool(self.rows) and not self.open_rows

    @property
    def verdict(self) -> str:
        if not self.rows:
            return f"no row outcomes kept for {self.original}"
        if self.done:
            return f"done: all {len(self.rows)} rows of {Path(self.original).name} are in BigChange"
        n = len(self.open_rows)
        return f"{n} of {len(self.rows)} rows need attention"


def family(runs: list[Any], start: Path) -> tuple[str, list[Any]]:
    """The original input and the family runs (RunRecords, oldest first) of `start` (an original or any of its
    corrections files)."""
    from pipeline.run.runner import file_sha256

    by_id = {r.run_id: r for r in runs if r.summary is not None and not r.summary.get("dry_run")}
    resolved = str(start.resolve())
    sha = file_sha256(start) if start.is_file() else None
    own = [r for r in by_id.values() if r.input == resolved or (sha and r.input_sha256 == sha)]
    parent = corrected_run(start) if start.is_file() else None
    seeds = own or ([by_id[parent]] if parent in by_id else [])
    if not seeds:
        return resolved, []
    root = seeds[0]
    seen: set[str] = set()
    while (up := root.summary.get("corrects_run")) in by_id and up not in seen:
        seen.add(up)
        root = by_id[up]
    members = {
        r.run_id
        for r in by_id.values()
        if r.input == root.input or (root.input_sha256 and r.input_sha256 == root.input_sha256)
    }
    grew = True
    while grew:
        more = {r.run_id for r in by_id.values() if r.summary.get("corrects_run") in members} - members
        members |= more
        grew = bool(more)
    chosen = sorted((by_id[m] for m in members), key=lambda r: r.started_at)
    return root.input, chosen


def sign_off(start: Path, ledger_paths: list[Path | str]) -> SignOff:
    """The sign-off of the file `start` belongs to, from every ledger in `ledger_paths`."""
    from pipeline.submit.ledger import Ledger

    original, rounds = "", []
    for path in ledger_paths:
        with Ledger.open_existing(path) as ledger:
            found_original, members = family(ledger.runs(1_000_000), start)
            if not members:
                continue
            original = found_original
            for r in members:
                kept = ledger.has_run_rows(r.run_id)
                errors: dict[int, str] = {}
                for row, _field, column, _check, message in ledger.run_errors(r.run_id) if kept else []:
                    errors.setdefault(row, f"{column}: {message}" if column else message)
                rows = ledger.run_rows(r.run_id) if kept else []
                rounds.append(Round(r.run_id, r.input, r.started_at, r.summary, rows, errors, kept))
            break
    result = SignOff(original or str(start.resolve()), rounds)
    result.rows = _final(rounds, original)
    return result


def _final(rounds: list[Round], original: str) -> list[RowOutcome]:
    final: dict[int, RowOutcome] = {}
    originals = {
        origin for r in rounds if r.input == original or not r.summary.get("corrects_run") for _, origin, *_ in r.rows
    }
    for r in rounds:  # oldest first: a later round replaces an earlier one, unless the earlier one created it
        for row, origin, _key, status, job_id, _reference, problem in r.rows:
            if origin in final and final[origin].status in SUCCESS:
                continue
            message = r.errors.get(row) or _problem_text(problem)
            final[origin] = RowOutcome(origin, status, job_id, r.run_id, r.input, message)
    return [final[o] for o in sorted(final) if o in originals or not originals]


def _problem_text(problem: str | None) -> str:
    if not problem:
        return ""
    try:
        doc = json.loads(problem)
    except ValueError:
        return ""
    return str(doc.get("detail") or doc.get("title") or doc.get("note") or "")


def write_signoff(result: SignOff) -> None:
    """signoff.csv in the report folder of the family's latest round, and a section in its summary.html."""
    if not result.rounds:
        return
    reports = result.rounds[-1].summary.get("reports") or {}
    summary_json = reports.get("summary_json")
    if not summary_json:
        return
    folder = Path(summary_json).parent
    if not folder.is_dir():
        return
    target = folder / SIGNOFF_CSV
    with target.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "status", "job_id", "run_id", "input", "message"])
        for r in result.rows:
            writer.writerow([r.origin_row, r.status, r.job_id or "", r.run_id, r.input, _safe(r.message)])
        writer.writerow([])
        writer.writerow(["verdict", result.verdict])
    result.report_dir, result.csv_path = folder, target
    page = folder / "summary.html"
    if page.is_file():
        _add_section(page, result)


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _add_section(page: Path, result: SignOff) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<section class="signoff">.*?</section>', "", text, flags=re.S)
    open_rows = result.open_rows[:50]
    rows = "".join(
        f"<tr><td>{r.origin_row}</td><td>{html.escape(r.status)}</td><td>{html.escape(r.message)}</td></tr>"
        for r in open_rows
    )
    table = (
        f"<table><thead><tr><th>Row</th><th>Status</th><th>What is wrong</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    section = (
        '<section class="signoff"><h2>Sign-off of the original file</h2>'
        f"<p>{html.escape(Path(result.original).name)} over {len(result.rounds)} rounds: "
        f"<strong>{html.escape(result.verdict)}</strong> (every row: {SIGNOFF_CSV})</p>{table}</section>"
    )
    page.write_text(text.replace("</main>", section + "</main>", 1), encoding="utf-8")


def render(result: SignOff) -> str:
    """The console text: one line per original row, then the verdict."""
    if not result.rounds:
        return f"{result.original}: no run of this file (or of a corrections file of it) in the ledgers"
    n = len(result.rounds)
    lines = [f"{result.original}: {n} round{'s' if n > 1 else ''} ({', '.join(r.run_id for r in result.rounds)})"]
    gone = [r.run_id for r in result.rounds if not r.kept]
    if gone:
        lines.append(f"  (the ledger no longer keeps the row outcomes of {', '.join(gone)}: not counted)")
    lines.append(f"  {'row':>6}  {'status':<16}  {'job id':>10}  round / what")
    for r in result.rows:
        where = Path(r.input).name
        what = f"{r.run_id} {where}" + (f": {r.message}" if r.message and r.status not in SUCCESS else "")
        lines.append(f"  {r.origin_row:>6}  {r.status:<16}  {r.job_id or '':>10}  {what}")
    lines.append(result.verdict)
    if result.csv_path is not None:
        lines.append(f"signoff: {result.csv_path}")
    return "\n".join(lines)
