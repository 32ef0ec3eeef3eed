"""Fuzzing: real .xlsx, .ods and .csv files mutated by Hypothesis (zip bytes, zip members, sheet XML, CSV bytes)
and validated through the command's own entry point. Whatever the damage, the answer is exit 0, 1 or 2; a refusal
is one line (`jobimport: …`, never "unexpected error"), no traceback, and memory stays bounded.

Example counts are kept modest so the suite stays fast: 40 workbooks, 25 OpenDocument files, 50 CSV files
(~1 minute on a loaded 2-core machine). Raise them with JOBIMPORT_FUZZ_SCALE=10 for a longer hunt.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobfiles import CONSTANT_MAPPING

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCALE = int(os.environ.get("JOBIMPORT_FUZZ_SCALE", "1"))
MEMORY_LIMIT_MB = 1024

MAPPING = CONSTANT_MAPPING

_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def _cell(text: str) -> str:
    return f'<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>'


def _ods_bytes() -> bytes:
    rows = "".join(
        f"<table:table-row>{_cell(a)}{_cell(b)}"
        f'<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>'
        "</table:table-row>"
        for a, b, n in [("Ref", "Notes", "0"), ("R1", "first job", "1.5"), ("R2", "second", "2"), ("R3", "x", "3")]
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODS_NS} office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Jobs">{rows}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
            'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
            '<manifest:file-entry manifest:full-path="/" '
            'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>',
        )
        z.writestr("content.xml", content)
    return buffer.getvalue()


BASES = {
    ".xlsx": ((ROOT / "samples" / "jobs.xlsx").read_bytes(), (ROOT / "mappings" / "jobs_xlsx.toml").read_text()),
    ".csv": ((ROOT / "samples" / "legacy_jobs.csv").read_bytes(), (ROOT / "mappings" / "legacy_csv.toml").read_text()),
    ".ods": (_ods_bytes(), MAPPING),
}
CODES: dict[str, dict[int, int]] = {suffix: {} for suffix in (".xlsx", ".csv", ".ods")}
_ODD_BYTES = [b"\x00", b"\xff", b"\xe9", b"\xc3", b'"', b";", b",", b"\r", b"\n", b"<", b"&", b"\x1b", b"\xef\xbb\xbf"]


@st.composite
def byte_edit(draw: st.DrawFn, data: bytes) -> bytes:
    """One edit of `data`: bytes replaced, inserted or removed, a slice repeated, or the end cut off."""
    if not data:
        return draw(st.binary(max_size=64))
    at = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["replace", "insert", "delete", "repeat", "truncate"]))
    piece = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(_ODD_BYTES)))
    if kind == "replace":
        return data[:at] + piece + data[at + len(piece) :]
    if kind == "insert":
        return data[:at] + piece + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)) :]
    if kind == "repeat":
        size = draw(st.integers(1, 200))
        return data[:at] + data[at : at + size] * draw(st.integers(2, 2000)) + data[at:]
    return data[:at]


@st.composite
def xml_edit(draw: st.DrawFn, xml: bytes) -> bytes:
    """One edit that keeps the XML well-formed (mostly) but says something hostile: a huge row or column number,
    a row repeated, a long text, an odd character in a text, an attribute's value replaced."""
    kind = draw(st.sampled_from(["number", "rows", "text", "char", "attribute", "bytes"]))
    if kind == "number":
        numbers = list(re.finditer(rb"\d+", xml))
        if numbers:
            m = draw(st.sampled_from(numbers))
            big = str(draw(st.sampled_from([0, 1_048_576, 1_048_577, 16_385, 2**31, 2**64, 10**30]))).encode()
            return xml[: m.start()] + big + xml[m.end() :]
    if kind == "rows":
        rows = list(re.finditer(rb"<(?:table:table-)?row\b.*?</(?:table:table-)?row>", xml, re.S))
        if rows:
            m = draw(st.sampled_from(rows))
            return xml[: m.end()] + m.group(0) * draw(st.integers(1, 3000)) + xml[m.end() :]
    if kind in ("text", "char"):
        texts = list(re.finditer(rb">([^<>]{1,200})<", xml))
        if texts:
            m = draw(st.sampled_from(texts))
            if kind == "text":
                new = b"y" * draw(st.sampled_from([32_766, 32_767, 32_768, 40_000]))
            else:
                new = draw(st.text(min_size=1, max_size=5)).encode("utf-8", "surrogatepass")
                new = new.replace(b"<", b"&lt;").replace(b"&", b"&amp;")
            return xml[: m.start(1)] + new + xml[m.end(1) :]
    if kind == "attribute":
        values = list(re.finditer(rb'="([^"]*)"', xml))
        if values:
            m = draw(st.sampled_from(values))
            new = draw(st.sampled_from([b"", b"-1", b"XFE1", b"A0", b"e", b"&amp;", b"9" * 30, b"s", b"inlineStr"]))
            return xml[: m.start(1)] + new + xml[m.end(1) :]
    return draw(byte_edit(xml))


@st.composite
def mutated_zip(draw: st.DrawFn, data: bytes) -> bytes:
    """A workbook with one of its members edited (XML-aware or bytes) and re-zipped, or the zip's bytes edited."""
    if draw(st.integers(0, 4)) == 0:
        return draw(byte_edit(data))
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    index = draw(st.integers(0, len(members) - 1))
    xml_names = [i for i, (info, _) in enumerate(members) if info.filename.endswith(".xml")]
    if xml_names and draw(st.booleans()):
        index = draw(st.sampled_from(xml_names))
    info, content = members[index]
    edited = draw(xml_edit(content)) if info.filename.endswith(".xml") else draw(byte_edit(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for i, (each, body) in enumerate(members):
            target.writestr(each.filename, edited if i == index else body)
    return out.getvalue()


def _reset_peak() -> bool:
    """Linux: reset this process's peak RSS (VmHWM), so the fuzz run's own peak can be read afterwards."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        return True
    return False


def _peak_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _validate(suffix: str, content: bytes) -> None:
    folder = Path(tempfile.mkdtemp(prefix="jobimport-fuzz-"))
    try:
        path = folder / f"jobs{suffix}"
        path.write_bytes(content)
        mapping = folder / "mapping.toml"
        mapping.write_text(BASES[suffix][1].replace('file = "../samples/', f'file = "{ROOT.as_posix()}/samples/'))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(path), "--mapping", str(mapping), "--report-dir", str(folder / "r")])
        errors = err.getvalue()
        CODES[suffix][code] = CODES[suffix].get(code, 0) + 1
        assert code in (0, 1, 2), (code, errors)
        assert "Traceback" not in errors + out.getvalue() and "unexpected error" not in errors, errors
        if code == 2:
            assert errors.count("\n") == 1 and errors.startswith("jobimport: "), errors
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fuzz(suffix: str, examples: int) -> None:
    base = BASES[suffix][0]
    strategy = mutated_zip(base) if suffix != ".csv" else byte_edit(base)

    @settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def check(content: bytes) -> None:
        _validate(suffix, content)

    reset = _reset_peak()
    check()
    codes = dict(sorted(CODES[suffix].items()))
    print(f"\n{suffix}: {examples * SCALE} examples, exit codes {codes}, peak RSS {_peak_mb():.0f} MB")
    if reset:
        assert _peak_mb() <= MEMORY_LIMIT_MB
    # the mutations bite (some files refused) and do not only break (some still read)
    assert CODES[suffix].get(2, 0) > 0 and CODES[suffix].get(0, 0) + CODES[suffix].get(1, 0) > 0, CODES[suffix]


def test_the_base_files_are_valid_inputs() -> None:
    for suffix, (content, _) in BASES.items():
        _validate(suffix, content)


@pytest.mark.timeout(600)
def test_fuzzed_xlsx_files_exit_0_1_or_2_in_one_line() -> None:
    _fuzz(".xlsx", 40)


@pytest.mark.timeout(600)
def test_fuzzed_ods_files_exit_0_1_or_2_in_one_line() -> None:
    _fuzz(".ods", 25)


@pytest.mark.timeout(600)
def test_fuzzed_csv_files_exit_0_1_or_2_in_one_line() -> None:
    _fuzz(".csv", 50)
