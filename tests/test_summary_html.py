"""summary.html opened in a real headless Chromium: renders, makes no network request, logs no error, shows the
numbers, escapes user text, and its screenshot is not blank. Chromium missing is a failure, not a skip."""

from __future__ import annotations

import os
import struct
import zlib
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline.model import ORIGIN_ROW, ROW, CellError, RawTable, errors_frame
from pipeline.report import RunSummary, write_reports

CHROMIUM = os.environ.get("JOBIMPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "install it with: sudo apt-get update && sudo apt-get install -y chromium"
EVIL = '<script>alert("x")</script><img src="http://evil.example/p.png">'


def build_summary(report_dir: Path) -> Path:
    """A realistic run with every section of the page filled, user text that tries to inject HTML included."""
    n = 60
    columns = ["Legacy Ref", "Job Type", "Customer Code", "Duration", "Notes"]
    frame = pl.DataFrame({c: [f"{c[:3]}{i}" for i in range(n)] for c in columns})
    frame = frame.with_columns(
        pl.int_range(2, n + 2, dtype=pl.Int64).alias(ROW), pl.int_range(2, n + 2, dtype=pl.Int64).alias(ORIGIN_ROW)
    )
    raw = RawTable(frame=frame, columns=columns, source=Path("jobs.csv"), kind="csv", delimiter=",")
    statuses = ["created"] * 30 + ["already_created"] * 5 + ["invalid"] * 12 + ["rejected"] * 8 + ["pending"] * 5
    outcomes = pl.DataFrame(
        {
            ROW: frame[ROW],
            ORIGIN_ROW: frame[ORIGIN_ROW],
            "status": statuses,
            "job_id": pl.Series([5000 + i if i < 35 else None for i in range(n)], dtype=pl.Int64),
            "reference": frame["Legacy Ref"],
            "problem_status": pl.Series([422 if s == "rejected" else None for s in statuses], dtype=pl.Int64),
            "problem_title": [EVIL if s == "rejected" else None for s in statuses],
            "problem_detail": pl.Series([None] * n, dtype=pl.String),
            "problem_type": pl.Series([None] * n, dtype=pl.String),
            "note": pl.Series([None] * n, dtype=pl.String),
        }
    )
    errors: list[CellError] = []
    for i, status in enumerate(statuses):
        row = i + 2
        if status == "invalid":
            errors.append(CellError(row, "contactId", "Customer Code", "lookup", "Customer code not found"))
            if i % 2:
                errors.append(CellError(row, "plannedDuration", "Duration", "duration", "Use 90, 1:30 or 1h30"))
        if status == "rejected":
            errors.append(CellError(row, "description", "Notes", "api", EVIL))
    run = RunSummary(
        run_id="run-42",
        input="/data/<b>drop</b>/jobs.csv",
        mapping="mappings/jobs.toml",
        sheet=None,
        encoding="utf-8",
        delimiter=",",
        dry_run=False,
        started_at="2024-06-01T10:15:00Z",
        finished_at="2024-06-01T10:16:00Z",
        duration_s=60.0,
        rows_sent=43,
        throughput_rows_per_s=0.72,
        retries=3,
        http_429=2,
        http_5xx=1,
        reconciled=0,
        stop_reason=None,
        exit_code=1,
        customer_id=7,
        notes=[EVIL],
    )
    # Last run: rows 2-9 invalid (now created: fixed), 37-48 invalid (still), rows 52-61 absent (new).
    before = ["invalid"] * 8 + ["created"] * 27 + ["invalid"] * 12 + ["created"] * 3
    previous = pl.DataFrame({ORIGIN_ROW: list(range(2, 52)), "status": before})
    paths = write_reports(report_dir, run, raw, outcomes, errors_frame(errors), previous)
    return paths.summary_html


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into rows of pixels; enough to tell blank from not."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {depth=} {colour=}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, bpp)]


def test_png_decoder_tells_blank_from_drawn() -> None:
    def png(width: int, rows: list[bytes]) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b"")
        )

    white = png(2, [b"\x00" + b"\xff" * 6] * 2)
    assert set(png_pixels(white)[2]) == {b"\xff\xff\xff"}
    # Row 2 uses the Sub filter: second pixel = first + (1, 1, 1).
    drawn = png(2, [b"\x00" + b"\x10\x20\x30" + b"\xff\xff\xff", b"\x01" + b"\x05\x05\x05" + b"\x01\x01\x01"])
    assert png_pixels(drawn)[2] == [b"\x10\x20\x30", b"\xff\xff\xff", b"\x05\x05\x05", b"\x06\x06\x06"]


def test_summary_html_in_a_real_browser(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; {INSTALL_HINT} (or set JOBIMPORT_CHROMIUM to its path)")
    from playwright.sync_api import sync_playwright

    page_path = build_summary(tmp_path / "reports" / "run-42")
    html = page_path.read_text(encoding="utf-8")
    for forbidden in ("<script", "<link", "<img", "<iframe", "@import", "url(", 'src="', 'href="http'):
        assert forbidden not in html.lower(), forbidden

    url = page_path.resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 800})
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(url, wait_until="load")
            page.wait_for_load_state("networkidle")

            assert page.title() == "Import report – jobs.csv"
            assert page.inner_text("h1").startswith("Import report")
            headings = page.locator("h2").all_inner_texts()
            for expected in ("Outcome of every row", "The run", "What changed since the last run", "Errors"):
                assert expected in headings
            assert "Most frequent problems" in headings and "Answers from the API" in headings
            counts = {s: page.inner_text(f'[data-count="{s}"]') for s in ("total", "created", "invalid", "valid")}
            assert counts == {"total": "60", "created": "30", "invalid": "12", "valid": "0"}
            changes = {k: page.inner_text(f'[data-change="{k}"]') for k in ("fixed", "still_failing", "new")}
            assert changes == {"fixed": "8", "still_failing": "12", "new": "10"}
            assert "25 of 60 rows need attention" in page.inner_text(".verdict")
            assert page.locator("svg.chart").count() == 3  # outcome share, errors by kind, errors by column
            assert page.locator('#errors svg text:text-is("Customer Code")').count() == 1
            assert "37, 38, 39, 40, 41, …" in page.inner_text("#messages")  # first rows of the top message
            assert "49, 50, 51, 52, 53, …" in page.inner_text("#api")
            # Hostile text is shown as text, never run or loaded.
            assert page.evaluate("document.querySelectorAll('script, img, iframe, link').length") == 0
            assert EVIL in page.inner_text("#messages") and EVIL in page.inner_text("#notes")
            assert "/data/<b>drop</b>/jobs.csv" in page.inner_text("header")

            shot = page.screenshot(clip={"x": 0, "y": 0, "width": 900, "height": 500})
        finally:
            browser.close()

    assert problems == []
    assert requests == [url], f"unexpected requests: {requests}"
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (900, 500)
    colours = Counter(pixels)
    assert len(colours) > 50, "screenshot looks blank"
    assert colours.most_common(1)[0][1] < 0.9 * len(pixels), "screenshot is mostly one colour"
