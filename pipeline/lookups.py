"""Lookup tables of a mapping: translate legacy codes (job type codes, customer codes…) to BigChange ids.

A lookup comes from a CSV file (two columns, by default the first is the key and the second the id; named
columns with `key_column` / `id_column`) or from inline `values = {"CODE" = 101}`. Keys match case- and
space-insensitively ("svc 01" finds "SVC01"); leading zeros are significant ("007" is not "7").
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MappingError


def normalise_key(text: pl.Expr) -> pl.Expr:
    """The comparison form of a lookup key: lower case, without any whitespace."""
    return text.str.to_lowercase().str.replace_all(r"\s+", "")


def _normalise_one(key: str) -> str:
    return "".join(key.lower().split())


@dataclass(frozen=True)
class Lookup:
    """One named lookup: normalised key → id (as text; the field's parser turns it into its type)."""

    name: str
    file: Path | None  # None for inline values
    table: dict[str, str]

    def where(self) -> str:
        """How a message names this lookup: "lookup 'job_types' (lookups/job_types.csv)"."""
        return f"lookup '{self.name}' ({self.file})" if self.file else f"lookup '{self.name}' (inline values)"

    def translate(self, text: pl.Expr) -> pl.Expr:
        """The id (text) of each key of `text`; null when blank or not in the table."""
        keys = list(self.table)
        ids = list(self.table.values())
        return normalise_key(text).replace_strict(keys, ids, default=None, return_dtype=pl.String)


def _add(table: dict[str, str], raw_key: str, raw_id: str, where: str, mapping_file: Path, name: str) -> None:
    key = _normalise_one(raw_key)
    value = raw_id.strip()
    if not key:
        raise MappingError(f"{mapping_file}: [lookups.{name}] {where} has a blank key; fill it in or remove the line")
    if not value:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] {where}: key '{raw_key}' has no id; fill it in or remove the line"
        )
    if key in table and table[key] != value:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] {where}: key '{raw_key}' is listed twice with different ids "
            f"({table[key]} and {value}); keep one"
        )
    table[key] = value


def _read_csv(path: Path, spec: dict[str, Any], mapping_file: Path, name: str) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] file '{path}' does not exist; paths are relative to the mapping file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] cannot read '{path}' as UTF-8 CSV ({exc}); save it as UTF-8 CSV"
        ) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise MappingError(f"{mapping_file}: [lookups.{name}] '{path}' is empty; it needs a header line key,id")
    header = [h.strip() for h in rows[0]]
    key_col = spec.get("key_column", header[0] if header else "")
    id_col = spec.get("id_column", header[1] if len(header) > 1 else "")
    for label, col in (("key_column", key_col), ("id_column", id_col)):
        if col not in header or not col:
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] {label} '{col}' is not a column of '{path}' "
                f"(columns: {', '.join(header) or 'none'}); fix the column name"
            )
    ki, ii = header.index(key_col), header.index(id_col)
    table: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(ki, ii):
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] '{path}' line {line_no} has {len(row)} field(s); "
                f"it needs '{key_col}' and '{id_col}'"
            )
        _add(table, row[ki], row[ii], f"'{path}' line {line_no}", mapping_file, name)
    return table


def load_lookup(name: str, spec: Any, mapping_file: Path) -> Lookup:
    """Load `[lookups.<name>]` of `mapping_file`; MappingError names the file, the key and what to do."""
    if not isinstance(spec, dict):
        raise MappingError(f'{mapping_file}: [lookups.{name}] must be a table with `file = "…"` or `values = {{…}}`')
    allowed = {"file", "values", "key_column", "id_column"}
    for key in spec:
        if key not in allowed:
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] unknown key '{key}'; allowed keys: {', '.join(sorted(allowed))}"
            )
    has_file, has_values = "file" in spec, "values" in spec
    if has_file == has_values:
        raise MappingError(f'{mapping_file}: [lookups.{name}] needs exactly one of `file = "…"` or `values = {{…}}`')
    if has_values:
        values = spec["values"]
        if not isinstance(values, dict):
            raise MappingError(f'{mapping_file}: [lookups.{name}] values must be a table like {{"SVC" = 101}}')
        table: dict[str, str] = {}
        for k, v in values.items():
            _add(table, str(k), str(v), "values", mapping_file, name)
        return Lookup(name, None, table)
    path = Path(os.path.normpath(mapping_file.parent / str(spec["file"])))
    return Lookup(name, path, _read_csv(path, spec, mapping_file, name))
