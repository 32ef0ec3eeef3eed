"""Hostile workbooks made on the fly, small on disk: zip members of gigabytes written without ever holding them.

A member is a list of segments (bytes, repeat count). Each segment is deflated once on its own (a fresh compressor,
flushed to a byte boundary, so its output refers to nothing before it) and that output is written `repeat` times;
a final empty block ends the stream. The CRC-32 of the repeated data is combined arithmetically (zlib's
crc32_combine), so a 5 GB member costs a few milliseconds and a few megabytes. The zip is written by hand in
zip64 form (sizes above 4 GB), and is valid: Python's zipfile reads it back and its CRC checks pass.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

Segment = tuple[bytes, int]

CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/xl/workbook.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    b'<Override PartName="/xl/worksheets/sheet1.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    b'<Override PartName="/xl/sharedStrings.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    b"</Types>"
)
ROOT_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    b'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<sheets><sheet name="Jobs" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    b'worksheet" Target="worksheets/sheet1.xml"/>'
    b'<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    b'sharedStrings" Target="sharedStrings.xml"/></Relationships>'
)
SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_TAIL = b"</sheetData></worksheet>"
HEADER_ROW = (
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>Ref</t></is></c><c r="B1" t="inlineStr"><is><t>Notes</t></is></c></row>'
)
NO_STRINGS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="0" uniqueCount="0"/>'
)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B) (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _repeated_crc(crc: int, length: int, times: int) -> int:
    """CRC-32 of a block (crc, length) repeated `times` times, by doubling."""
    total, total_len = 0, 0
    while times:
        if times & 1:
            total, total_len = crc32_combine(total, crc, length), total_len + length
        crc, length = crc32_combine(crc, crc, length), length * 2
        times >>= 1
    return total


def _member(segments: list[Segment]) -> tuple[list[tuple[bytes, int]], int, int, int]:
    """(deflated pieces with repeat counts, crc, uncompressed size, compressed size)."""
    pieces: list[tuple[bytes, int]] = []
    crc = size = packed = 0
    grouped: list[Segment] = []
    for data, times in segments:  # a short segment repeated often is grouped into ~1 MB blocks first
        per = max(1, (1 << 20) // max(1, len(data)))
        if times > per:
            grouped += [(data * per, times // per), (data, times % per)]
        else:
            grouped.append((data, times))
    for data, times in grouped:
        if not data or times <= 0:
            continue
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = deflate.compress(data) + deflate.flush(zlib.Z_FULL_FLUSH)
        pieces.append((block, times))
        crc = crc32_combine(crc, _repeated_crc(zlib.crc32(data), len(data), times), len(data) * times)
        size += len(data) * times
        packed += len(block) * times
    pieces.append((b"\x03\x00", 1))  # a final, empty, fixed-Huffman block
    return pieces, crc, size, packed + 2


def write_zip(path: Path, members: dict[str, list[Segment] | bytes], declared: dict[str, int] | None = None) -> Path:
    """A zip64 file of deflated members; a member is bytes, or segments (bytes, repeat count). `declared` makes
    the zip directory lie: the unpacked size it gives for the named members."""
    central = b""
    with path.open("wb") as out:
        for name, content in members.items():
            segments = [(content, 1)] if isinstance(content, bytes) else content
            pieces, crc, size, packed = _member(segments)
            size = (declared or {}).get(name, size)
            encoded = name.encode()
            offset = out.tell()
            extra = struct.pack("<HHQQ", 1, 16, size, packed)
            out.write(
                struct.pack(
                    "<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(encoded), len(extra)
                )
                + encoded
                + extra
            )
            for block, times in pieces:
                for _ in range(times):
                    out.write(block)
            cd_extra = struct.pack("<HHQQQ", 1, 24, size, packed, offset)
            central += (
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    45,
                    45,
                    0,
                    8,
                    0,
                    0x21,
                    crc,
                    0xFFFFFFFF,
                    0xFFFFFFFF,
                    len(encoded),
                    len(cd_extra),
                    0,
                    0,
                    0,
                    0,
                    0xFFFFFFFF,
                )
                + encoded
                + cd_extra
            )
        start = out.tell()
        out.write(central)
        end = out.tell()
        count = len(members)
        out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, end - start, start))
        out.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path


def xlsx(path: Path, sheet: list[Segment] | bytes, strings: list[Segment] | bytes = NO_STRINGS) -> Path:
    """A one-sheet workbook ("Jobs") whose sheet XML and shared strings are given (segments or bytes)."""
    return write_zip(
        path,
        {
            "[Content_Types].xml": CONTENT_TYPES,
            "_rels/.rels": ROOT_RELS,
            "xl/workbook.xml": WORKBOOK,
            "xl/_rels/workbook.xml.rels": WORKBOOK_RELS,
            "xl/sharedStrings.xml": strings,
            "xl/worksheets/sheet1.xml": sheet,
        },
    )


GB = 1 << 30
MB = 1 << 20


def spaces_bomb(path: Path, size: int = 5 * GB) -> Path:
    """The issue's first bomb: a sheet whose XML holds `size` bytes of spaces between two rows."""
    row2 = b'<row r="2"><c r="A2" t="inlineStr"><is><t>R1</t></is></c></row>'
    return xlsx(path, [(SHEET_HEAD + HEADER_ROW, 1), (b" " * MB, size // MB), (row2 + SHEET_TAIL, 1)])


def shared_string_bomb(path: Path, size: int = 3 * GB) -> Path:
    """The second: one shared string of `size` characters, used by cell B2."""
    strings: list[Segment] = [
        (
            b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>',
            1,
        ),
        (b"A" * MB, size // MB),
        (b"</t></si></sst>", 1),
    ]
    row2 = b'<row r="2"><c r="A2" t="inlineStr"><is><t>R1</t></is></c><c r="B2" t="s"><v>0</v></c></row>'
    return xlsx(path, SHEET_HEAD + HEADER_ROW + row2 + SHEET_TAIL, strings)


def rows_bomb(path: Path, rows: int = 40_000_000, numbered: bool = False) -> Path:
    """The third: `rows` data rows of one number each (rows without `r`, as the format allows, unless
    `numbered`: then the last row carries its number)."""
    row = b"<row><c><v>1</v></c></row>"
    body: list[Segment] = [(SHEET_HEAD + HEADER_ROW, 1), (row, rows - 1)]
    last = f'<row r="{rows + 1}"><c r="A{rows + 1}"><v>1</v></c></row>'.encode() if numbered else row
    return xlsx(path, [*body, (last + SHEET_TAIL, 1)])


def csv_long_line(path: Path, size: int = 200 * MB, newline: bool = True) -> Path:
    """The fourth: a CSV whose header line is `size` bytes long (no delimiter in it), then one row."""
    with path.open("wb") as out:
        chunk = b"H" * MB
        for _ in range(size // MB):
            out.write(chunk)
        if newline:
            out.write(b"\nR1\n")
    return path
