"""Read stage: turn any supported spreadsheet file into a RawTable (all cells as text, with visible row numbers).

`read_table` dispatches on the file extension to `read_csv` (.csv/.tsv/.txt) or `read_excel`
(.xlsx/.xlsm/.xls/.ods), which end with `finish_table` (pipeline/read/finish.py), the rules common to both. Every
problem is an InputFileError with a one-line message.
"""

from __future__ import annotations

import stat
from pathlib import Path

from pipeline.errors import InputFileError
from pipeline.model import ROW, RawTable
from pipeline.read.limits import CELL_CHARS, ReadLimits, check_cell_lengths

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


def read_table(
    path: Path,
    *,
    sheet: str | None = None,
    header_row: int = 1,
    encoding: str | None = None,
    delimiter: str | None = None,
    limits: ReadLimits | None = None,
) -> RawTable:
    """Read `path` as a table of text cells; see RawTable. Raises InputFileError with a one-line message.

    `header_row` is the 1-based row holding the headers; rows above it are ignored, and blank rows at that
    position are skipped (the header is the first non-blank row at or after `header_row`). `sheet` applies to
    workbooks only (default: the first visible sheet with at least one data row under a header); `encoding`
    and `delimiter` to delimited text only (default: detected / sniffed). `limits`: what the file may cost
    (pipeline/read/limits.py; default: ReadLimits()).
    """
    limits = limits or ReadLimits()
    path = Path(path)
    if not isinstance(header_row, int) or isinstance(header_row, bool) or header_row < 1:
        raise InputFileError(f"{path}: header_row must be a whole number from 1 (got {header_row!r}); fix the mapping")
    if not path.exists():
        raise InputFileError(f"{path}: file not found; check the path and the file name")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a file; give the path of the spreadsheet inside it")
    try:
        info = path.stat()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(
            f"{path}: is {_kind_of(info.st_mode)}, not a regular file; give the path of a saved spreadsheet file"
        )
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES:
        supported = " ".join(CSV_SUFFIXES + EXCEL_SUFFIXES)
        raise InputFileError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}'; save it as one of: {supported}"
        )
    size = info.st_size
    if size == 0:
        raise InputFileError(f"{path}: file is empty (0 bytes); export the data again")
    try:
        if suffix in CSV_SUFFIXES:
            from pipeline.read.csv import read_csv

            table = read_csv(path, header_row=header_row, encoding=encoding, delimiter=delimiter, limits=limits)
            check_cell_lengths(table.frame, table.columns, ROW, str(path), limits.max_field_chars, "max_field_chars")
        else:
            from pipeline.read.excel import read_excel

            table = read_excel(path, sheet=sheet, header_row=header_row, limits=limits)
            where = f"{path}, sheet '{table.sheet}'"
            check_cell_lengths(table.frame, table.columns, ROW, where, CELL_CHARS, None)
        lock = open_lock_file(path)
        if lock is not None:
            table.warnings.insert(
                0,
                f"{path}: may be open in Excel or LibreOffice with changes not saved (its lock file {lock.name} "
                "is beside it): what was read is the file as last saved; save and close it, then run again",
            )
        return table
    except InputFileError:
        raise
    except PermissionError as exc:
        raise InputFileError(f"{path}: cannot be read (permission denied); check its permissions") from exc
    except MemoryError as exc:
        raise InputFileError(f"{path}: too large to read in memory; split it into smaller files") from exc
    except Exception as exc:  # never let a library traceback reach the user
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputFileError(f"{path}: cannot be read as a table ({detail}); check the file opens in Excel") from exc


def open_lock_file(path: Path) -> Path | None:
    """The lock file Excel (`~$name`, or `~$` over the first two letters of a long name) or LibreOffice
    (`.~lock.name#`) keeps beside a file while it is open, if there is one."""
    names = ("~$" + path.name, "~$" + path.name[2:], f".~lock.{path.name}#")
    for name in names:
        lock = path.with_name(name)
        if name != "~$" and lock != path and lock.is_file():
            return lock
    return None


def _kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
