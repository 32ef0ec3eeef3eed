"""The map stage, applied: a raw text table under a loaded mapping → the job frame of typed API fields, and cell errors.

`apply_mapping` checks the mapping's columns against the input's headers, then converts every cell in vectorised
polars expressions; a cell that is not blank but does not convert (or is not in its lookup) becomes a cell error,
never a silent null. `bind_tenant` builds the mapping's look-ups against the tenant from its reference data. (The
mapping file itself is loaded and checked by pipeline/mapping/load.py.)
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from pipeline.errors import MappingError
from pipeline.mapping.load import CustomField, FieldSpec, Mapping
from pipeline.mapping.lookups import Lookup, resolve_persons, tenant_lookup
from pipeline.mapping.parsers import UUID_PATTERN, bad_value_expr, parse_value, quoted, text_of
from pipeline.mapping.units import header_unit
from pipeline.model import API_FIELDS, ERROR_SCHEMA, INT_FIELDS, ORIGIN_ROW, ROW, CellError, RawTable, errors_frame


@dataclass
class MappedTable:
    """The job frame (typed API fields + "cf:<id>" text columns) and the cells that did not convert."""

    frame: pl.DataFrame
    errors: pl.DataFrame


def _check_column(mapping: Mapping, raw: RawTable, where: str, column: str) -> None:
    if column in raw.columns:
        return
    close = difflib.get_close_matches(column, raw.columns, n=3, cutoff=0.5)
    if close:
        hint = "closest headers: " + ", ".join(f"'{c}'" for c in close)
    else:
        shown = raw.columns[:10]
        hint = "headers: " + ", ".join(f"'{c}'" for c in shown) + (", …" if len(raw.columns) > 10 else "")
    raise MappingError(
        f"{mapping.path}: {where} column '{column}' is not a header of {raw.source.name}; {hint}; "
        "fix the mapping or the file"
    )


def source_columns(mapping: Mapping) -> list[str]:
    """Every column of the input that the mapping reads."""
    named = [spec.column for spec in mapping.fields.values() if spec.column is not None]
    return list(dict.fromkeys([*named, *mapping.template_columns(), *(cf.column for cf in mapping.custom_fields)]))


def _check_columns(mapping: Mapping, raw: RawTable) -> None:
    for spec in mapping.fields.values():
        if spec.column is not None:
            _check_column(mapping, raw, f"[fields.{spec.name}]", spec.column)
    for name in mapping.template_columns():
        _check_column(mapping, raw, "[fields.reference] template placeholder", name)
    for cf in mapping.custom_fields:
        _check_column(mapping, raw, f'[custom_fields] "{cf.column}"', cf.column)


def _column_unit(mapping: Mapping, where: str, column: str, unit: str | None) -> str | None:
    """The unit of a duration column's plain numbers: the mapping's, else its header's; MappingError when the
    mapping says one unit and the header the other (`unit = "minutes"` on a column headed `Hours`)."""
    named = header_unit(column)
    if unit is not None and named is not None and named != unit:
        raise MappingError(
            f"{mapping.path}: {where} unit = \"{unit}\" but the column '{column}' says {named}; "
            "fix the unit (or the header) so that both say the same"
        )
    return unit or named


def resolve_units(mapping: Mapping) -> Mapping:
    """The mapping with each duration column's unit settled (see `_column_unit`)."""
    fields = dict(mapping.fields)
    for name, spec in mapping.fields.items():
        if spec.parse == "duration" and spec.column is not None:
            fields[name] = replace(spec, unit=_column_unit(mapping, f"[fields.{name}]", spec.column, spec.unit))
    custom = tuple(
        replace(cf, unit=_column_unit(mapping, f'[custom_fields] "{cf.column}"', cf.column, cf.unit))
        if cf.parse == "duration"
        else cf
        for cf in mapping.custom_fields
    )
    return replace(mapping, fields=fields, custom_fields=custom)


def _cell(column: str, trim: bool, trimmed: frozenset[str] = frozenset()) -> pl.Expr:
    """The cell text of `column`, trimmed when asked (and not known to be trimmed already); blank → null."""
    text = pl.col(column).cast(pl.String)
    if trim and column not in trimmed:
        text = text.str.strip_chars()
    return text.replace("", None)


def _no_errors() -> pl.DataFrame:
    return errors_frame()


def _error_rows(
    frame: pl.DataFrame, mask: pl.Series, field: str, column: str | None, check: str | pl.Expr, message: pl.Expr
) -> pl.DataFrame:
    """ERROR_SCHEMA rows for the rows of `frame` where `mask` is true; `message` evaluated on those rows only."""
    failing = frame.filter(mask)
    return failing.select(
        pl.col(ROW).alias("row"),
        pl.lit(field, dtype=pl.String).alias("field"),
        pl.lit(column, dtype=pl.String).alias("column"),
        (pl.lit(check, dtype=pl.String) if isinstance(check, str) else check).alias("check"),
        message.alias("message"),
    )


def _dtype(name: str) -> pl.DataType:
    return pl.Int64() if name in INT_FIELDS else pl.String()


def _keyed(spec: FieldSpec) -> bool:
    """True when the field's cells are parsed or looked up (on their distinct values), not taken as text.
    (Persons looked up against the tenant are taken as text here, then looked up within their row's contact.)"""
    if spec.lookup == "bigchange:persons":
        return False
    return spec.column is not None and (spec.parse != "text" or spec.lookup is not None)


def _source(spec: FieldSpec) -> pl.Expr:
    """The cells a keyed field converts: the column's text, blanks filled with the default."""
    assert spec.column is not None
    col = pl.col(spec.column).cast(pl.String)
    return col.fill_null(spec.default) if spec.default is not None else col


def _distinct(spec: FieldSpec) -> pl.Expr:
    """The distinct non-null cells a keyed field has to convert, as one list."""
    return _source(spec).drop_nulls().unique().implode()


def _conversion_table(spec: FieldSpec, mapping: Mapping, keys: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Conversion table (k → value) of a keyed field's distinct cells, and the keys that did not convert
    (k, check, message)."""
    dtype = _dtype(spec.name)
    cell = _cell("k", spec.trim)
    if spec.default is not None:
        cell = cell.fill_null(pl.lit(spec.default))
    table = pl.DataFrame({"k": keys}, schema={"k": pl.String}).with_columns(cell.alias("cell"))
    if spec.lookup:
        lookup = mapping.lookups[spec.lookup_key]
        table = table.with_columns(lookup.translate(pl.col("cell")).alias("text"))
    else:
        table = table.with_columns(pl.col("cell").alias("text"))
    parsed = parse_value(spec.parse, pl.col("text"), spec.unit).cast(dtype)
    if spec.parse == "uuid":  # a person id already in canonical form skips parsing (they can be many)
        canonical = pl.col("text").str.contains(UUID_PATTERN).fill_null(False)
        table = pl.concat(
            [
                table.filter(canonical).with_columns(pl.col("text").alias("value")),
                table.filter(~canonical).with_columns(parsed.alias("value")),
            ]
        )
    else:
        table = table.with_columns(parsed.alias("value"))
    miss = pl.col("cell").is_not_null() & pl.col("text").is_null()
    bad = pl.col("text").is_not_null() & pl.col("value").is_null()
    lookup_msg = pl.lit(None, dtype=pl.String)
    if spec.lookup:
        where = mapping.lookups[spec.lookup_key].where()
        lookup_msg = text_of(
            "'", quoted(pl.col("cell")), f"' is not in {where}; add the code to that file or correct the cell"
        )
    failed = table.filter(miss | bad).select(
        "k",
        pl.when(miss).then(pl.lit("lookup")).otherwise(pl.lit(spec.parse)).alias("check"),
        pl.when(miss)
        .then(lookup_msg)
        .otherwise(bad_value_expr(spec.name, spec.parse, pl.col("text"), spec.unit))
        .alias("message"),
    )
    if spec.lookup and mapping.lookups[spec.lookup_key].tenant and failed.height:
        failed = _tenant_misses(failed, table, mapping.lookups[spec.lookup_key])
    return table.select("k", "value"), failed


def _tenant_misses(failed: pl.DataFrame, table: pl.DataFrame, lookup: Lookup) -> pl.DataFrame:
    """The messages of a tenant look-up's misses: ambiguous (its candidates) or not found (the closest values)."""
    cells = dict(table.select("k", "cell").iter_rows())
    checks, messages = [], []
    for k, check, message in failed.iter_rows():
        if check == "lookup":
            check, message = lookup.miss(cells[k])
        checks.append(check)
        messages.append(message)
    return failed.with_columns(pl.Series("check", checks, pl.String), pl.Series("message", messages, pl.String))


def _value(
    spec: FieldSpec, mapping: Mapping, keys: pl.Series | None, trimmed: frozenset[str]
) -> tuple[pl.Expr, pl.DataFrame | None]:
    """The expression of one API field's typed values, and (keyed fields) the keys that did not convert.

    Parsing and lookups run on the distinct cell values only (ids, codes and durations repeat a lot), and the
    result is mapped back.
    """
    dtype = _dtype(spec.name)
    if spec.column is None:
        return pl.lit(spec.value, dtype=dtype).alias(spec.name), None
    if not _keyed(spec):
        cells = _cell(spec.column, spec.trim, trimmed)
        if spec.default is not None:
            cells = cells.fill_null(pl.lit(spec.default))
        return cells.alias(spec.name), None
    assert keys is not None
    table, failed = _conversion_table(spec, mapping, keys)
    value = _source(spec).replace_strict(table["k"], table["value"], default=None, return_dtype=dtype)
    return value.alias(spec.name), failed


def _conversion_errors(frame: pl.DataFrame, spec: FieldSpec, failed: pl.DataFrame) -> pl.DataFrame:
    """ERROR_SCHEMA rows for the cells of a keyed field whose value is one of the `failed` keys."""
    rows = frame.select(ROW, _source(spec).alias("k")).filter(pl.col("k").is_in(failed["k"].implode()))
    return rows.join(failed, on="k").select(
        pl.col(ROW).alias("row"),
        pl.lit(spec.name, dtype=pl.String).alias("field"),
        pl.lit(spec.column, dtype=pl.String).alias("column"),
        "check",
        "message",
    )


def _template_expr(spec: FieldSpec, trimmed: frozenset[str]) -> tuple[pl.Expr, list[str]]:
    """The reference generated by the template, and the columns it needs."""
    assert spec.template is not None
    pieces: list[pl.Expr] = []
    needed: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(spec.template):
        if literal:
            pieces.append(pl.lit(literal))
        if name is None:
            continue
        pieces.append(pl.col(ORIGIN_ROW).cast(pl.String) if name == "row" else _cell(name, True, trimmed))
        if name != "row":
            needed.append(name)
    return pl.concat_str(pieces), needed


def _template_errors(frame: pl.DataFrame, spec: FieldSpec, fails: pl.Series, needed: list[str]) -> pl.DataFrame:
    """Errors for the rows whose reference is blank and whose template cannot be filled."""
    missing = pl.lit(None, dtype=pl.String)
    for name in reversed(needed):
        missing = pl.when(_cell(name, True).is_null()).then(pl.lit(name)).otherwise(missing)
    col_txt = f"the column '{spec.column}' is blank and " if spec.column else ""
    message = text_of(
        f"no reference: {col_txt}the template '{spec.template}' needs '", missing, "', which is blank here; fill it in"
    )
    return _error_rows(frame, fails, spec.name, spec.column, "template", message)


def apply_mapping(raw: RawTable, mapping: Mapping) -> MappedTable:
    """Typed job frame of `raw` under `mapping`, plus conversion errors; MappingError for unknown columns.

    Two parallel polars passes over the rows: the distinct cells of every parsed or looked-up column, then
    every output column (the conversion tables in between are small: one row per distinct cell).
    """
    _check_columns(mapping, raw)
    mapping = resolve_units(mapping)
    if mapping.tenant_fields and mapping.tenant is None:
        first = mapping.tenant_fields[0]
        raise MappingError(
            f"{mapping.path}: [fields.{first.name}] lookup '{first.lookup}' needs the tenant's reference data; "
            "run `jobimport validate --online` (or `run`), with the BIGCHANGE_* settings"
        )
    frame = raw.frame
    keyed = [spec for spec in mapping.fields.values() if _keyed(spec)]
    distinct = frame.select(_distinct(spec).alias(spec.name) for spec in keyed) if keyed else pl.DataFrame()
    columns: list[pl.Expr] = [pl.col(ROW), pl.col(ORIGIN_ROW)]
    # per field, in API order: the keys that did not convert, and the columns its template needs
    checks: list[tuple[FieldSpec, pl.DataFrame | None, list[str] | None]] = []
    for name in API_FIELDS:
        spec = mapping.fields.get(name)
        if spec is None:
            columns.append(pl.lit(None, dtype=_dtype(name)).alias(name))
            continue
        keys = distinct.get_column(name)[0] if _keyed(spec) else None
        value, failed = _value(spec, mapping, keys, raw.trimmed)
        needed = None
        if spec.template is not None:
            generated, needed = _template_expr(spec, raw.trimmed)
            value = pl.coalesce(value, generated).alias(name)
        columns.append(value)
        checks.append((spec, failed, needed))
    columns.extend(_custom_value(cf, raw.trimmed) for cf in mapping.custom_fields)
    out = frame.select(columns)
    parsed_custom = [cf for cf in mapping.custom_fields if cf.parse != "text"]
    errors: list[pl.DataFrame] = [_custom_errors(frame, cf, raw.trimmed) for cf in parsed_custom]
    for spec, failed, needed in checks:
        if failed is not None and failed.height:
            errors.append(_conversion_errors(frame, spec, failed))
        if needed is not None:
            fails = out.get_column(spec.name).is_null()
            if fails.any():
                errors.append(_template_errors(frame, spec, fails, needed))
    person = mapping.fields.get("personId")
    if person is not None and person.lookup == "bigchange:persons":
        out, person_errors = _persons(out, person, mapping)
        errors.append(person_errors)
    errors.append(_raw_cell_errors(raw, mapping))
    all_errors = pl.concat([e.cast(ERROR_SCHEMA) for e in errors], how="vertical")  # type: ignore[arg-type]
    return MappedTable(frame=out, errors=all_errors.sort("row", maintain_order=True))


def _custom_value(cf: CustomField, trimmed: frozenset[str]) -> pl.Expr:
    """A custom field's value as sent: the cell's text, or (parse = "duration") its number of minutes as text."""
    cell = _cell(cf.column, cf.trim, trimmed)
    if cf.parse == "duration":
        cell = parse_value("duration", cell, cf.unit).cast(pl.String)
    return cell.alias(cf.key)


def _custom_errors(frame: pl.DataFrame, cf: CustomField, trimmed: frozenset[str]) -> pl.DataFrame:
    """Errors for the non-blank cells of a parsed custom field that do not parse."""
    cell = _cell(cf.column, cf.trim, trimmed)
    mask = frame.select((cell.is_not_null() & parse_value(cf.parse, cell, cf.unit).is_null()).alias("m")).to_series()
    return _error_rows(frame, mask, cf.key, cf.column, cf.parse, bad_value_expr(cf.key, cf.parse, cell, cf.unit))


def bind_tenant(mapping: Mapping, source: Any) -> Mapping:
    """The mapping with its look-ups against the tenant built from `source` (pipeline.tenant.TenantSource)."""
    lookups = dict(mapping.lookups)
    for spec in mapping.tenant_fields:
        if spec.lookup == "bigchange:jobTypes":
            lookups[spec.lookup_key] = tenant_lookup(spec.lookup, spec.by or "name", source.data.job_types)
        elif spec.lookup == "bigchange:contacts":
            lookups[spec.lookup_key] = tenant_lookup(spec.lookup, spec.by or "reference", source.data.contacts)
    return replace(mapping, lookups=lookups, tenant=source)


def _persons(out: pl.DataFrame, spec: FieldSpec, mapping: Mapping) -> tuple[pl.DataFrame, pl.DataFrame]:
    """personId looked up by email or name among the persons of each row's contact (fetched for those contacts)."""
    pairs_frame = out.select("contactId", "personId").drop_nulls().unique()
    pairs = [(int(c), str(p)) for c, p in pairs_frame.iter_rows()]
    data = mapping.tenant.persons_of({c for c, _ in pairs}) if pairs else mapping.tenant.data
    found, failed = resolve_persons(pairs, spec.by or "email", data.persons)
    table = pl.DataFrame(
        {
            "contactId": [c for c, _ in pairs],
            "personId": [p for _, p in pairs],
            "__id": [found.get(pair) for pair in pairs],
            "__check": [failed[pair][0] if pair in failed else None for pair in pairs],
            "__message": [failed[pair][1] if pair in failed else None for pair in pairs],
        },
        schema={
            "contactId": pl.Int64,
            "personId": pl.String,
            "__id": pl.String,
            "__check": pl.String,
            "__message": pl.String,
        },
    )
    joined = out.join(table, on=["contactId", "personId"], how="left", maintain_order="left")
    errors = joined.filter(pl.col("__check").is_not_null()).select(
        pl.col(ROW).alias("row"),
        pl.lit("personId").alias("field"),
        pl.lit(spec.column, dtype=pl.String).alias("column"),
        pl.col("__check").alias("check"),
        pl.col("__message").alias("message"),
    )
    # a person whose contact did not convert stays unresolved (null): the contact's error says what to fix
    resolved = joined.with_columns(pl.col("__id").alias("personId")).drop("__id", "__check", "__message")
    return resolved.select(out.columns), errors


def _raw_cell_errors(raw: RawTable, mapping: Mapping) -> pl.DataFrame:
    """raw.cell_errors (e.g. #N/A cells) of the columns the mapping uses, attributed to the fields they feed."""
    feeds: dict[str, list[str]] = {}
    for spec in mapping.fields.values():
        if spec.column is not None:
            feeds.setdefault(spec.column, []).append(spec.name)
    for name in mapping.template_columns():
        feeds.setdefault(name, []).append("reference")
    for cf in mapping.custom_fields:
        feeds.setdefault(cf.column, []).append(cf.key)
    out: list[CellError] = []
    for err in raw.cell_errors:
        if err.column is None:
            continue
        for field_name in dict.fromkeys(feeds.get(err.column, [])):
            out.append(CellError(err.row, field_name, err.column, err.check, err.message))
    return errors_frame(out)
