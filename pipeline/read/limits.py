"""Limits on what a file may make jobimport read, checked before (or while) the bytes are unpacked.

A small file can ask for gigabytes: a zip member of 5 GB of spaces, one shared string of 3 GB, 40 million rows,
a CSV "line" of 200 MB. Each limit below is checked by streaming (or from the zip directory) before calamine or
polars is handed the file, and each refusal is one line naming the file, the limit and, where a genuine file may
exceed it, the `[source]` setting of the mapping that raises it.

Format limits (fixed: no genuine workbook exceeds them): 1,048,576 rows, 16,384 columns, 32,767 characters a
cell. Settings (`ReadLimits`, from the mapping's `[source]`): the unpacked size of a zip member and its
compression ratio, the cells of a sheet (what calamine holds in memory: ~50 bytes each, so the default keeps a
read under ~1 GB), and for CSV the length of a line and of a field.
"""

from __future__ import annotations

import html
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

import polars as pl

from pipeline.errors import InputFileError

MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
CELL_CHARS = 32_767
_MB = 1 << 20
_CHUNK = 4 * _MB
#: members smaller than this may have any compression ratio (a tiny styles.xml of repeated tags compresses 50×)
_RATIO_FLOOR = 16 * _MB
#: more members than this is no spreadsheet (a directory of millions of entries costs memory of its own)
_MAX_MEMBERS = 10_000
#: a deflated member this small unpacks to at most ~66 MB, whatever its directory entry says
_SAFE_PACKED = 64 * 1024
#: an XML text run of N bytes holds at least N / 10 characters (`&#x10FFFF;` is one character in 10 bytes)
_BYTES_PER_CHAR = 10


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """What one input file may cost; each is a `[source]` setting of the mapping (same name)."""

    max_unpacked_mb: int = 500  # a workbook's zip member, unpacked
    max_compression_ratio: int = 200  # unpacked ÷ packed, for members over 16 MB
    max_cells: int = 15_000_000  # rows × columns of the sheet read
    max_line_kb: int = 1024  # CSV: one line
    max_field_chars: int = CELL_CHARS  # CSV: one field

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _raise_hint(setting: str, value: int) -> str:
    return f"if the file is genuine, raise `{setting}` (now {value:,}) in the mapping's [source]"


# --- zip workbooks (.xlsx/.xlsm/.ods) -----------------------------------------------------------------------


def check_archive(path: Path, limits: ReadLimits) -> None:
    """The zip directory of a workbook: how many members, and each one's unpacked size and compression ratio."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputFileError(
            f"{path}: is not a valid {path.suffix} workbook (its zip directory cannot be read: {exc}); "
            "open it in Excel or LibreOffice and save it again"
        ) from exc
    if len(infos) > _MAX_MEMBERS:
        raise InputFileError(
            f"{path}: holds {len(infos):,} zip members, more than the {_MAX_MEMBERS:,} any workbook has; "
            "this is not a spreadsheet saved by Excel or LibreOffice"
        )
    cap = limits.max_unpacked_mb * _MB
    for info in infos:
        size, packed = info.file_size, max(1, info.compress_size)
        if size > cap:
            raise InputFileError(
                f"{path}: its part {info.filename} unpacks to {size / _MB:,.0f} MB, more than the "
                f"{limits.max_unpacked_mb:,} MB jobimport unpacks; "
                + _raise_hint("max_unpacked_mb", limits.max_unpacked_mb)
            )
        if size > _RATIO_FLOOR and size / packed > limits.max_compression_ratio:
            raise InputFileError(
                f"{path}: its part {info.filename} unpacks {size / packed:,.0f} times its packed size "
                f"({packed / _MB:,.1f} MB to {size / _MB:,.0f} MB), more than the ratio of "
                f"{limits.max_compression_ratio:,} a spreadsheet has (a zip bomb?); "
                f"{_raise_hint('max_compression_ratio', limits.max_compression_ratio)}"
            )
    # a member small when packed cannot unpack to much (deflate: at most ~1,032 times): only the others are inflated
    for info in infos:
        if info.compress_size > _SAFE_PACKED:
            _check_real_size(path, info, limits)


def _check_real_size(path: Path, info: zipfile.ZipInfo, limits: ReadLimits) -> None:
    """What a member really unpacks to, inflated here in bounded pieces: no more than its directory entry says
    (calamine inflates a member whole, trusting the stream, not the directory: a styles.xml declared as 1,000
    bytes that inflates to 2 GB took 2 GB of memory) and no more than max_unpacked_mb."""
    limit = min(info.file_size, limits.max_unpacked_mb * _MB)
    lying = InputFileError(
        f"{path}: its part {info.filename} unpacks to more than its zip directory says ({info.file_size:,} "
        "bytes): the file is damaged or was made to mislead; open it in Excel or LibreOffice and save it again"
    )
    with path.open("rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise lying
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size > limit:
                raise lying
            return
        if info.compress_type != zipfile.ZIP_DEFLATED:
            return  # (calamine reads stored and deflated members only: it refuses the others itself)
        inflater, left, out = zlib.decompressobj(-15), info.compress_size, 0
        while left > 0 and not inflater.eof:
            data = f.read(min(_CHUNK, left))
            if not data:
                break
            left -= len(data)
            while data and not inflater.eof:
                out += len(inflater.decompress(data, _CHUNK))
                data = inflater.unconsumed_tail
                if out > limit:
                    raise (
                        lying
                        if out > info.file_size
                        else InputFileError(
                            f"{path}: its part {info.filename} unpacks to more than {limits.max_unpacked_mb:,} MB; "
                            + _raise_hint("max_unpacked_mb", limits.max_unpacked_mb)
                        )
                    )


def _member_chunks(zf: zipfile.ZipFile, member: str, path: Path, limits: ReadLimits) -> Iterator[bytes]:
    """A member's bytes in chunks, stopping (refused) once more than max_unpacked_mb came out."""
    cap, total = limits.max_unpacked_mb * _MB, 0
    try:
        with zf.open(member) as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise InputFileError(
                        f"{path}: its part {member} unpacks to more than {limits.max_unpacked_mb:,} MB although "
                        f"its zip directory says less; {_raise_hint('max_unpacked_mb', limits.max_unpacked_mb)}"
                    )
                yield chunk
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # (zlib.error is caught as exc below)
        raise InputFileError(
            f"{path}: its part {member} is damaged ({exc}); open it in Excel and save it again"
        ) from exc
    except Exception as exc:
        if type(exc).__name__ != "error":  # zlib.error
            raise
        raise InputFileError(
            f"{path}: its part {member} is damaged ({exc}); open it in Excel and save it again"
        ) from exc


class _TextRuns:
    """The longest text between two XML tags of a stream of chunks, in characters, checked against CELL_CHARS.

    Whitespace-only runs (indentation between elements) are no cell's text and are ignored. A run's characters are
    counted exactly (entities unescaped, UTF-8 decoded) only when its bytes exceed the limit."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.pending = b""  # the run open at the end of the last chunk (kept up to 10 × the limit)
        self.pending_len = 0
        self.pending_text = False  # it holds something other than whitespace

    def feed(self, chunk: bytes) -> None:
        last = chunk.rfind(b"<")
        if last < 0:  # the whole chunk continues the open run
            self._grow(chunk)
            return
        first = chunk.find(b"<")
        self._grow(chunk[:first])
        self._close()
        # A run longer than CELL_CHARS covers a whole window of `step` bytes starting at first + k·step: only
        # windows without a '<' are looked at (a few thousand finds per 100 MB).
        step, start, judged = CELL_CHARS // 2 + 1, first, first
        while start + step <= last:
            if start >= judged and chunk.find(b"<", start, start + step) < 0:
                begin, end = chunk.rfind(b"<", 0, start), chunk.find(b"<", start)
                text = chunk[begin + 1 : end].partition(b">")[2]
                if len(text) > CELL_CHARS:
                    self._judge(text, len(text))
                judged = end
            start += step
        tail = chunk[last + 1 :]
        close = tail.find(b">")
        self.pending, self.pending_len, self.pending_text = b"", 0, False
        if close >= 0:
            self._grow(tail[close + 1 :])

    def finish(self) -> None:
        self._close()

    def _grow(self, data: bytes) -> None:
        if not data:
            return
        self.pending_len += len(data)
        if len(self.pending) <= _BYTES_PER_CHAR * CELL_CHARS:
            self.pending += data
        if not self.pending_text and data.strip():
            self.pending_text = True
        # refused as soon as it is certain, not when the run ends (gigabytes later)
        if self.pending_len > (_BYTES_PER_CHAR * CELL_CHARS if self.pending_text else _MB):
            self._close()

    def _close(self) -> None:
        if self.pending_len > CELL_CHARS:
            self._judge(self.pending, self.pending_len)
        self.pending, self.pending_len, self.pending_text = b"", 0, False

    def _judge(self, text: bytes, size: int) -> None:
        if not text.strip():  # blank space between two tags: no cell's text, but no workbook holds a megabyte of it
            if size > _MB:
                raise InputFileError(
                    f"{self.where} holds more than {size / _MB:,.0f} MB of blank space between two tags: it was not "
                    "saved by Excel or LibreOffice; check where the file comes from"
                )
            return
        # (a run of more than 10 × the limit in bytes holds more than the limit in characters, whatever it holds)
        chars = size if size > _BYTES_PER_CHAR * CELL_CHARS else len(html.unescape(text.decode("utf-8", "replace")))
        if chars > CELL_CHARS:
            exact = size <= _BYTES_PER_CHAR * CELL_CHARS
            shown = f"{chars:,} characters" if exact else f"more than {size / _MB:,.1f} MB of text"
            raise InputFileError(
                f"{self.where} holds a cell of {shown}, more than the {CELL_CHARS:,} a cell may hold (Excel's "
                "limit): it was not saved by Excel or LibreOffice; check where the file comes from"
            )


def check_text_member(zf: zipfile.ZipFile, member: str, path: Path, limits: ReadLimits, what: str) -> None:
    """A workbook part's text runs (a shared string table, an .ods content.xml): none over CELL_CHARS."""
    if member not in zf.namelist():
        return
    runs = _TextRuns(f"{path}: its {what} ({member})")
    for chunk in _member_chunks(zf, member, path, limits):
        runs.feed(chunk)
    runs.finish()


_ROOT = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet[\s>]")


def _column_number(letters: bytes) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + (ch - 64)
    return number


def check_sheet_xml(zf: zipfile.ZipFile, member: str, path: Path, sheet: str, limits: ReadLimits) -> None:
    """One streaming pass over a worksheet's XML before calamine loads it: rows (a `<row>` without `r` counts
    too), the widest column named by a cell reference, cells, and the longest inline text."""
    where = f"{path}, sheet '{sheet}'"
    runs = _TextRuns(where)
    rows = max_row = cells = width = 0
    row_tag = cell_tag = b""
    row_ref = cell_ref = far_cell = re.compile(b"")
    tail = b""
    for i, chunk in enumerate(_member_chunks(zf, member, path, limits)):
        if i == 0:
            root = _ROOT.search(chunk[:4096])
            ns = (root.group(1) + b":") if root is not None and root.group(1) else b""
            row_tag, cell_tag = b"<" + ns + b"row", b"<" + ns + b"c"
            row_ref = re.compile(rb"<%srow\b[^>]*?\sr=\"(\d+)\"" % re.escape(ns))
            cell_ref = re.compile(rb'<%sc r="([A-Z]+)' % re.escape(ns))  # (Excel writes r first)
            # a cell's row beyond the sheet (calamine aborts the process on a row number of 2^31)
            far_cell = re.compile(rb'r="\$?[A-Z]+\$?(\d{7,})')  # (whatever the attribute order)
        runs.feed(chunk)
        # tags may straddle two chunks: they are counted in `tail + chunk` up to its last '<'
        buf = tail + chunk
        cut = buf.rfind(b"<")
        if cut < 0 or len(buf) - cut > 4096:  # (no tag starts near the end: nothing straddles)
            cut = len(buf)
        done, tail = buf[:cut], buf[cut:]
        rows += done.count(row_tag)  # (`<row` also starts `<rowBreaks`: one more at most)
        refs = row_ref.findall(done)
        if refs:
            max_row = max(max_row, max(map(int, refs)))
        far = far_cell.findall(done)
        if far:
            max_row = max(max_row, max(map(int, far)))
        cells += done.count(cell_tag)  # (`<c` also starts `<col`, `<cfRule`: a few more at most)
        letters = set(cell_ref.findall(done))
        if letters:
            width = max(width, max(map(_column_number, letters)))
        if max(rows, max_row) > MAX_ROWS:
            raise InputFileError(
                f"{where}: has more than {MAX_ROWS:,} rows (Excel's limit); it was not saved by Excel or "
                "LibreOffice: check where the file comes from, or split the data into several files"
            )
        if width > MAX_COLUMNS:
            raise InputFileError(
                f"{where}: has a cell beyond column XFD ({MAX_COLUMNS:,} columns, Excel's limit); it was not "
                "saved by Excel or LibreOffice: check where the file comes from"
            )
        dense = max(cells, max(rows, max_row) * max(width, 1))
        if dense > limits.max_cells:
            raise InputFileError(
                f"{where}: spans more than {limits.max_cells:,} cells (rows × columns), more than jobimport "
                f"reads at once; split the file, or {_raise_hint('max_cells', limits.max_cells)}"
            )
    runs.finish()


def check_frame_cells(height: int, width: int, where: str, limits: ReadLimits) -> None:
    """After a read whose sheet could not be surveyed first (.xls, .ods): the format's rows and columns."""
    if height > MAX_ROWS or width > MAX_COLUMNS:
        raise InputFileError(
            f"{where}: has {height:,} rows and {width:,} columns, more than a spreadsheet's {MAX_ROWS:,} × "
            f"{MAX_COLUMNS:,}; check where the file comes from"
        )


# --- delimited text -------------------------------------------------------------------------------------------


def check_lines(f: IO[bytes], path: Path, limits: ReadLimits) -> None:
    """No line (ended by \\n or \\r) longer than max_line_kb, streamed from `f` before the file is read whole."""
    cap = limits.max_line_kb * 1024
    run, line = 0, 1  # the length of the line still open after the last chunk, and its number
    while chunk := f.read(_CHUNK):
        pieces = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        if len(pieces) == 1:
            run += len(chunk)
        else:
            if run + len(pieces[0]) > cap:
                _too_long(path, line, run + len(pieces[0]), limits)
            if max(map(len, pieces[1:-1]), default=0) > cap:  # (which line: only worked out for the refusal)
                at = next(i for i in range(1, len(pieces) - 1) if len(pieces[i]) > cap)
                _too_long(path, line + at, len(pieces[at]), limits)
            line += len(pieces) - 1
            run = len(pieces[-1])
        if run > cap:
            _too_long(path, line, run, limits, more=True)


def _too_long(path: Path, line: int, size: int, limits: ReadLimits, more: bool = False) -> None:
    length = f"{'more than ' if more else ''}{size / 1024:,.0f} KB"
    raise InputFileError(
        f"{path}: line {line} is {length} long, more than the {limits.max_line_kb:,} KB a line may have; "
        "check it is a delimited text file with line breaks, or, "
        f"{_raise_hint('max_line_kb', limits.max_line_kb)}"
    )


# --- every table read -----------------------------------------------------------------------------------------


def check_cell_lengths(
    frame: pl.DataFrame, columns: list[str], row_column: str, where: str, limit: int, setting: str | None
) -> None:
    """No header and no cell longer than `limit` characters (refused, never cut): the first one is named."""
    hint = (
        _raise_hint(setting, limit)
        if setting
        else "a cell holds at most that many (Excel's limit): check where the file comes from"
    )
    for name in columns:
        if len(name) > limit:
            raise InputFileError(f"{where}: a header is {len(name):,} characters long, more than {limit:,}; {hint}")
    if not columns or frame.height == 0:
        return
    longest = frame.select(pl.col(c).str.len_chars().max().alias(str(i)) for i, c in enumerate(columns)).row(0)
    for name, length in zip(columns, longest, strict=True):
        if length is not None and length > limit:
            row = frame.filter(pl.col(name).str.len_chars() > limit).get_column(row_column).item(0)
            raise InputFileError(
                f"{where}: row {row}, column '{name[:60]}' holds {length:,} characters, more than {limit:,}; {hint}"
            )
