"""Hostile files: each is refused with one line (exit 2) naming the file and the limit, within 30 s and 1 GB.

The four bombs of issue 21 (5 GB of spaces in a sheet's XML, a 3 GB shared string, 40 million rows, a 200 MB
CSV header line) and our own additions are made on the fly (tests/bombs.py: zip members of gigabytes written
as a few megabytes). Each runs `jobimport validate` in a child process whose peak RSS is read from the kernel
(os.wait4: that child only), so these tests are POSIX-only; the product is not.

Run with `-s` to see the table of cases: exit code, peak RSS and time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bombs
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak RSS of a child: POSIX only")

RSS_LIMIT_MB = 1024
TIME_LIMIT_S = 30.0

MAPPING = """
[source]
{source}

[fields.typeId]
value = "101"

[fields.contactId]
value = "5001"

[fields.reference]
column = "Ref"
"""

#: limits a user might raise for a genuine big file: the streaming checks behind them must still hold
RAISED = "max_unpacked_mb = 100000\nmax_compression_ratio = 100000\nmax_cells = 2000000000"

TABLE: list[tuple[str, int, float, float, str]] = []


def mapping(folder: Path, source: str = "") -> Path:
    path = folder / f"mapping{abs(hash(source))}.toml"
    path.write_text(MAPPING.format(source=source), encoding="utf-8")
    return path


def validate(path: Path, mapping_file: Path, cwd: Path) -> tuple[int, str, str, float, float]:
    """`jobimport validate PATH` in a child: (exit code, stdout, stderr, peak RSS in MB, seconds)."""
    started = time.monotonic()
    out_path, err_path = cwd / "child.out", cwd / "child.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "validate",
                str(path),
                "--mapping",
                str(mapping_file),
                "--report-dir",
                "r",
            ],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS (ru_maxrss: KiB on Linux)
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    text = (
        out_path.read_text(encoding="utf-8", errors="replace"),
        err_path.read_text(encoding="utf-8", errors="replace"),
    )
    return child.returncode, text[0], text[1], usage.ru_maxrss / 1024, elapsed


@pytest.fixture(autouse=True, scope="module")
def _print_table() -> object:
    yield
    if TABLE:
        print("\n| case | exit | peak RSS (MB) | time (s) | the line |\n|---|---|---|---|---|")
        for case, code, rss, seconds, line in TABLE:
            print(f"| {case} | {code} | {rss:.0f} | {seconds:.1f} | {line} |")


def _refused(case: str, path: Path, mapping_file: Path, cwd: Path, *expected: str) -> str:
    code, out, err, rss, seconds = validate(path, mapping_file, cwd)
    line = err.strip()
    TABLE.append((case, code, rss, seconds, line.replace(str(path), path.name)))
    assert code == 2, (out, err)
    assert "\n" not in line and "Traceback" not in err and line.startswith(f"jobimport: {path}")
    for text in expected:
        assert text in line, line
    assert rss <= RSS_LIMIT_MB, f"{case}: peak RSS {rss:.0f} MB"
    assert seconds <= TIME_LIMIT_S, f"{case}: {seconds:.1f} s"
    return line


Maker = Callable[[Path], Path]

ISSUE_BOMBS: list[tuple[str, Maker, tuple[str, ...]]] = [
    (
        "xlsx, 5 GB of spaces in the sheet XML",
        lambda d: bombs.spaces_bomb(d / "spaces.xlsx"),
        ("xl/worksheets/sheet1.xml unpacks to 5,120 MB", "max_unpacked_mb", "[source]"),
    ),
    (
        "xlsx, one 3 GB shared string",
        lambda d: bombs.shared_string_bomb(d / "string.xlsx"),
        ("xl/sharedStrings.xml unpacks to 3,072 MB", "max_unpacked_mb"),
    ),
    (
        "xlsx, 40 million rows",
        lambda d: bombs.rows_bomb(d / "rows.xlsx"),
        ("xl/worksheets/sheet1.xml unpacks to", "max_unpacked_mb"),
    ),
    (
        "csv, a 200 MB header line",
        lambda d: bombs.csv_long_line(d / "line.csv"),
        ("line 1 is more than", "1,024 KB a line may have", "max_line_kb"),
    ),
]


@pytest.mark.parametrize(("case", "make", "expected"), ISSUE_BOMBS, ids=[c[0] for c in ISSUE_BOMBS])
def test_the_issues_four_bombs_are_refused_in_one_line_quickly_and_in_little_memory(
    tmp_path: Path, case: str, make: Maker, expected: tuple[str, ...]
) -> None:
    path = make(tmp_path)
    _refused(case, path, mapping(tmp_path), tmp_path, *expected)


def _sheet(rows: bytes) -> bytes:
    return bombs.SHEET_HEAD + bombs.HEADER_ROW + rows + bombs.SHEET_TAIL


def _strings(*texts: bytes) -> bytes:
    items = b"".join(b"<si><t>" + t + b"</t></si>" for t in texts)
    return (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + items + b"</sst>"
    )


def _ods(path: Path, content: list[bombs.Segment] | bytes) -> Path:
    manifest = (
        b'<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        b'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        b'<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        b'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        b"</manifest:manifest>"
    )
    return bombs.write_zip(
        path,
        {
            "mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
            "META-INF/manifest.xml": manifest,
            "content.xml": content,
        },
    )


ODS_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    b'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    b'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    b'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body>'
    b'<office:spreadsheet><table:table table:name="Jobs"><table:table-row>'
    b'<table:table-cell office:value-type="string"><text:p>Ref</text:p></table:table-cell></table:table-row>'
    b'<table:table-row><table:table-cell office:value-type="string"><text:p>'
)
ODS_TAIL = b"</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet></office:body>"
ODS_TAIL += b"</office:document-content>"

# our own additions: the same bombs with the user-settable limits raised (the streaming checks behind them
# hold), the format's own limits, zip directories, OpenDocument, CSV fields
OWN: list[tuple[str, Maker, str, tuple[str, ...]]] = [
    (
        "xlsx, 5 GB of spaces, size/ratio limits raised",
        lambda d: bombs.spaces_bomb(d / "spaces.xlsx"),
        RAISED,
        ("sheet 'Jobs' holds more than 4 MB of blank space", "not saved by Excel"),
    ),
    (
        "xlsx, 3 GB shared string, size/ratio limits raised",
        lambda d: bombs.shared_string_bomb(d / "string.xlsx"),
        RAISED,
        ("shared strings (xl/sharedStrings.xml) holds a cell of more than", "32,767 a cell may hold"),
    ),
    (
        "xlsx, 40 million rows, size/ratio limits raised",
        lambda d: bombs.rows_bomb(d / "rows.xlsx"),
        RAISED,
        ("sheet 'Jobs': has more than 1,048,576 rows (Excel's limit)",),
    ),
    (
        "xlsx, one row numbered 2,000,000 (r attribute)",
        lambda d: bombs.xlsx(d / "far.xlsx", _sheet(b'<row r="2000000"><c r="A2000000"><v>1</v></c></row>')),
        "",
        ("has more than 1,048,576 rows",),
    ),
    (
        "xlsx, a cell in row 2,147,483,648 (found by the fuzzer: calamine aborted the process)",
        lambda d: bombs.xlsx(d / "abort.xlsx", _sheet(b'<row r="2"><c s="0" r="J2147483648"><v>1</v></c></row>')),
        "",
        ("has more than 1,048,576 rows",),
    ),
    (
        "xlsx, a cell in column XFE (16,385)",
        lambda d: bombs.xlsx(d / "wide.xlsx", _sheet(b'<row r="2"><c r="XFE2"><v>1</v></c></row>')),
        "",
        ("beyond column XFD",),
    ),
    (
        "xlsx, 1,000,000 rows x 20 columns (sparse: column T)",
        lambda d: bombs.xlsx(
            d / "sparse.xlsx",
            [
                (bombs.SHEET_HEAD + bombs.HEADER_ROW, 1),
                (b'<row><c><v>1</v></c><c r="T2"><v>2</v></c></row>', 1_000_000),
                (bombs.SHEET_TAIL, 1),
            ],
        ),
        "max_compression_ratio = 100000",
        ("spans more than 15,000,000 cells", "max_cells"),
    ),
    (
        "xlsx, a shared string of 32,768 characters",
        lambda d: bombs.xlsx(
            d / "long.xlsx",
            _sheet(b'<row r="2"><c r="A2" t="s"><v>0</v></c></row>'),
            _strings(b"x" * 32_768),
        ),
        "",
        ("holds a cell of 32,768 characters",),
    ),
    (
        "xlsx, an inline string of 40,000 characters (entities)",
        lambda d: bombs.xlsx(
            d / "inline.xlsx",
            _sheet(b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + b"&amp;" * 40_000 + b"</t></is></c></row>"),
        ),
        "",
        ("sheet 'Jobs' holds a cell of 40,000 characters",),
    ),
    (
        "xlsx, a zip directory that lies (styles.xml said 1,000 bytes, unpacks to 2 GB)",
        lambda d: bombs.write_zip(
            d / "lies.xlsx",
            {
                "[Content_Types].xml": bombs.CONTENT_TYPES,
                "_rels/.rels": bombs.ROOT_RELS,
                "xl/workbook.xml": bombs.WORKBOOK,
                "xl/_rels/workbook.xml.rels": bombs.WORKBOOK_RELS,
                "xl/sharedStrings.xml": bombs.NO_STRINGS,
                "xl/worksheets/sheet1.xml": _sheet(b'<row r="2"><c r="A2"><v>1</v></c></row>'),
                "xl/styles.xml": [(b"<styleSheet>", 1), (b" " * bombs.MB, 2048), (b"</styleSheet>", 1)],
            },
            declared={"xl/styles.xml": 1000},
        ),
        "",
        ("xl/styles.xml unpacks to more than its zip directory says (1,000 bytes)",),
    ),
    (
        "xlsx, 20,000 zip members",
        lambda d: bombs.write_zip(d / "members.xlsx", {f"x/{i}.xml": b"<a/>" for i in range(20_000)}),
        "",
        ("holds 20,000 zip members",),
    ),
    (
        "ods, content.xml of 2 GB of text",
        lambda d: _ods(d / "text.ods", [(ODS_HEAD, 1), (b"A" * bombs.MB, 2048), (ODS_TAIL, 1)]),
        "",
        ("content.xml unpacks to 2,048 MB",),
    ),
    (
        "ods, content.xml of 2 GB of text, limits raised",
        lambda d: _ods(d / "text.ods", [(ODS_HEAD, 1), (b"A" * bombs.MB, 2048), (ODS_TAIL, 1)]),
        RAISED,
        ("its content (content.xml) holds a cell of more than", "32,767 a cell may hold"),
    ),
    (
        "csv, 200 MB without any line break",
        lambda d: bombs.csv_long_line(d / "oneline.csv", newline=False),
        "",
        ("line 1 is more than", "max_line_kb"),
    ),
    (
        "csv, a 3 MB line after 1,000 good ones",
        lambda d: _write(d / "late.csv", b"Ref,Notes\n" + b"R,x\n" * 1000 + b"R," + b"y" * 3_000_000 + b"\n"),
        "",
        ("line 1002 is 2,930 KB long",),
    ),
    (
        "csv, a field of 40,000 characters",
        lambda d: _write(d / "field.csv", b"Ref,Notes\nR1," + "é".encode() * 40_000 + b"\n"),
        "",
        ("row 2, column 'Notes' holds 40,000 characters, more than 32,767", "max_field_chars"),
    ),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("case", "make", "source", "expected"), OWN, ids=[c[0] for c in OWN])
def test_our_own_hostile_files_are_refused_in_one_line_quickly_and_in_little_memory(
    tmp_path: Path, case: str, make: Maker, source: str, expected: tuple[str, ...]
) -> None:
    path = make(tmp_path)
    _refused(case, path, mapping(tmp_path, source), tmp_path, *expected)


def test_a_fifo_and_a_device_are_refused_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / "jobs.csv"
    os.mkfifo(fifo)
    line = _refused("a FIFO named jobs.csv", fifo, mapping(tmp_path), tmp_path)
    assert (
        line
        == f"jobimport: {fifo}: is a named pipe (FIFO), not a regular file; give the path of a saved spreadsheet file"
    )
    device = tmp_path / "zero.xlsx"
    device.symlink_to("/dev/zero")
    line = _refused("/dev/zero (as zero.xlsx)", device, mapping(tmp_path), tmp_path)
    assert line == f"jobimport: {device}: is a device, not a regular file; give the path of a saved spreadsheet file"


def test_the_limits_are_the_formats_own_a_cell_of_32767_characters_and_raised_settings_are_read(tmp_path: Path) -> None:
    at_limit = bombs.xlsx(
        tmp_path / "edge.xlsx",
        _sheet(b'<row r="2"><c r="A2" t="s"><v>0</v></c></row>'),
        _strings(b"x" * 32_767),
    )
    code, out, err, _, _ = validate(at_limit, mapping(tmp_path), tmp_path)
    assert code == 1 and "Traceback" not in err, (out, err)  # read; the reference is too long for the API
    field = _write(tmp_path / "field.csv", b"Ref,Notes\nR1," + b"y" * 40_000 + b"\n")
    code, out, err, _, _ = validate(field, mapping(tmp_path, "max_field_chars = 50000"), tmp_path)
    assert code == 0 and err == "", (out, err)
    bad = mapping(tmp_path, "max_cells = 0")
    code, out, err, _, _ = validate(field, bad, tmp_path)
    assert code == 2 and err.strip().endswith("[source] max_cells must be a whole number ≥ 1 (got 0)"), err


def test_a_hostile_file_in_a_drop_folder_goes_to_failed_with_its_error(tmp_path: Path, sandbox: object) -> None:
    from drops import by_name, drop, drop_env

    folder = tmp_path / "drop"
    folder.mkdir()
    bomb = bombs.spaces_bomb(folder / "nightly.xlsx")
    old = time.time() - 600
    os.utime(bomb, (old, old))
    env = drop_env(sandbox, tmp_path / "home")
    done = drop(folder, mapping(tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    entry = by_name(folder)["nightly.xlsx"]
    assert entry["outcome"] == "failed"
    filed = folder / entry["path"]
    assert filed.parent.parent.name == "failed" and filed.is_file()
    reason = filed.with_name(filed.name + ".error.txt").read_text(encoding="utf-8")
    assert "unpacks to 5,120 MB" in reason and "max_unpacked_mb" in reason
    assert not list((folder / "processing").glob("*"))
