"""The map stage: load a mapping file (`mappings/*.toml`) and turn the raw text table into typed API fields.

`load_mapping` checks everything that can be checked without the input (keys, fields, parsers, lookups,
constants, defaults) and raises one-line MappingErrors naming the file and the key. `apply_mapping` checks the
columns against the input's headers, then converts every cell in vectorised polars expressions; a cell that is
not blank but does not convert (or is not in its lookup) becomes a cell error, never a silent null.
"""

from __future__ import annotations

import difflib
import string
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MappingError
from pipeline.mapping.lookups import (
    TENANT_LOOKUPS,
    TENANT_PREFIX,
    Lookup,
    load_lookup,
    resolve_persons,
    tenant_lookup,
)
from pipeline.mapping.parsers import (
    FIELD_HINT,
    UUID_PATTERN,
    bad_value_expr,
    parse_scalar,
    parse_value,
    quoted,
    text_of,
)
from pipeline.model import (
    API_FIELDS,
    CUSTOM_PREFIX,
    ERROR_SCHEMA,
    INT_FIELDS,
    ORIGIN_ROW,
    REQUIRED_FIELDS,
    ROW,
    CellError,
    RawTable,
    errors_frame,
)

SECTIONS = ("source", "fields", "custom_fields", "lookups", "limits")
SOURCE_KEYS = ("sheet", "header_row", "encoding", "delimiter")
FIELD_KEYS = ("column", "value", "default", "parse", "lookup", "by", "trim", "template")
CUSTOM_KEYS = ("definition_id", "required", "trim", "job_types")
LIMIT_KEYS = ("reference", "description", "custom_field", "order_number")

#: parse kinds each field accepts; the first is the default.
FIELD_PARSE: dict[str, tuple[str, ...]] = {
    "typeId": ("integer",),
    "contactId": ("integer",),
    "plannedDuration": ("duration", "integer"),
    "reference": ("text",),
    "description": ("text",),
    "personId": ("uuid", "text"),
    "orderNumber": ("text",),
}


@dataclass(frozen=True)
class FieldSpec:
    """Where one API field comes from: a column (with trim, default, lookup, parse) or a constant value."""

    name: str
    column: str | None = None
    value: Any = None  # the constant, already parsed to the field's type
    default: str | None = None  # text used when the cell is blank, as if it were in the cell
    parse: str = "text"
    lookup: str | None = None
    trim: bool = True
    template: str | None = None  # reference only: used when the column is blank or absent
    by: str | None = None  # look-ups against the tenant ("bigchange:…"): the key ("reference", "name", "email")

    @property
    def tenant_lookup(self) -> bool:
        return self.lookup is not None and self.lookup.startswith(TENANT_PREFIX)

    @property
    def lookup_key(self) -> str:
        """The name of this field's look-up in Mapping.lookups ("bigchange:contacts:name" for the tenant's)."""
        assert self.lookup is not None
        return f"{self.lookup}:{self.by}" if self.tenant_lookup else self.lookup


@dataclass(frozen=True)
class CustomField:
    """A source column feeding custom field `definition_id`."""

    column: str
    definition_id: int
    required: bool = False
    trim: bool = True
    job_types: tuple[int, ...] | None = None  # the job types this definition belongs to, when declared

    @property
    def key(self) -> str:
        return f"{CUSTOM_PREFIX}{self.definition_id}"


@dataclass(frozen=True)
class Limits:
    """Maximum lengths in characters ([limits]); defaults from the older API (BIGCHANGE.md, [ASSUME])."""

    reference: int = 40
    description: int = 500
    custom_field: int = 500
    order_number: int | None = None


@dataclass(frozen=True)
class Mapping:
    """A loaded mapping file: source options, API fields, custom fields, limits and lookups."""

    path: Path
    sheet: str | None = None
    header_row: int = 1
    encoding: str | None = None
    delimiter: str | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    custom_fields: tuple[CustomField, ...] = ()
    limits: Limits = Limits()
    lookups: dict[str, Lookup] = field(default_factory=dict)
    tenant: Any = None  # the tenant's reference data (pipeline.tenant.TenantSource) once bound, else None

    @property
    def tenant_fields(self) -> list[FieldSpec]:
        """The fields looked up against the tenant ("bigchange:…" look-ups): they need its reference data."""
        return [spec for spec in self.fields.values() if spec.tenant_lookup]

    def source_column(self, field: str) -> str | None:
        """The column feeding an API field or "cf:<id>"; None when constant, generated or unmapped."""
        if field.startswith(CUSTOM_PREFIX):
            try:
                return self.custom_field_column(int(field[len(CUSTOM_PREFIX) :]))
            except ValueError:
                return None
        spec = self.fields.get(field)
        return spec.column if spec else None

    def custom_field_column(self, definition_id: int) -> str | None:
        """The column feeding custom field `definition_id`, or None when the mapping has none."""
        for cf in self.custom_fields:
            if cf.definition_id == definition_id:
                return cf.column
        return None

    @property
    def required_custom_fields(self) -> tuple[CustomField, ...]:
        return tuple(cf for cf in self.custom_fields if cf.required)

    def template_columns(self) -> list[str]:
        """Source columns named by the reference template (without `{row}`)."""
        spec = self.fields.get("reference")
        if spec is None or spec.template is None:
            return []
        return [name for _, name, _, _ in string.Formatter().parse(spec.template) if name and name != "row"]


@dataclass
class MappedTable:
    """The job frame (typed API fields + "cf:<id>" text columns) and the cells that did not convert."""

    frame: pl.DataFrame
    errors: pl.DataFrame


# --- load -----------------------------------------------------------------------------------------------------


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(path: Path, where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise MappingError(
                f"{path}: {where} unknown key '{key}'{_suggest(key, allowed)}; allowed keys: {', '.join(allowed)}"
            )


def _table(path: Path, doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise MappingError(f"{path}: '{name}' must be a section [{name}], not a single value")
    return value


def bad_value_message(field_name: str, kind: str, text: str) -> str:
    """The analyst message for a value of `field_name` that did not parse (one value; see `bad_value_expr`)."""
    return pl.select(bad_value_expr(field_name, kind, pl.lit(text, dtype=pl.String))).item()


def _load_source(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    source = _table(path, doc, "source")
    _check_keys(path, "[source]", source, SOURCE_KEYS)
    header_row = source.get("header_row", 1)
    if not isinstance(header_row, int) or isinstance(header_row, bool) or header_row < 1:
        raise MappingError(f"{path}: [source] header_row must be a whole number ≥ 1 (the row of the headers)")
    for key in ("sheet", "encoding", "delimiter"):
        if key in source and not isinstance(source[key], str):
            raise MappingError(f"{path}: [source] {key} must be text in quotes")
    delimiter = source.get("delimiter")
    if delimiter is not None and len(delimiter) != 1:
        raise MappingError(f"{path}: [source] delimiter must be one character, like \";\" (got '{delimiter}')")
    return {
        "sheet": source.get("sheet"),
        "header_row": header_row,
        "encoding": source.get("encoding"),
        "delimiter": delimiter,
    }


def _check_value(path: Path, where: str, spec: FieldSpec, text: str, lookups: dict[str, Lookup], what: str) -> Any:
    """Run a constant/default through the field's lookup and parser; MappingError if it would fail."""
    if spec.tenant_lookup:  # checked against the tenant when a run has its reference data
        return text
    if spec.lookup:
        hit = lookups[spec.lookup].table.get("".join(text.lower().split()))
        if hit is None:
            raise MappingError(
                f"{path}: {where} {what} '{text}' is not in {lookups[spec.lookup].where()}; add it there or change it"
            )
        text = hit
    parsed = parse_scalar(spec.parse, text)
    if parsed is None:
        raise MappingError(f"{path}: {where} {what} {bad_value_message(spec.name, spec.parse, text)}")
    return parsed


def _load_field(path: Path, name: str, raw: Any, lookups: dict[str, Lookup]) -> FieldSpec:
    where = f"[fields.{name}]"
    if not isinstance(raw, dict):
        raise MappingError(f'{path}: {where} must be a section with `column = "…"` or `value = …`')
    _check_keys(path, where, raw, FIELD_KEYS)
    column, template = raw.get("column"), raw.get("template")
    if column is not None and (not isinstance(column, str) or not column.strip()):
        raise MappingError(f"{path}: {where} column must be a header name in quotes")
    if "value" in raw and column is not None:
        raise MappingError(
            f"{path}: {where} has both 'column' and 'value'; keep one (value is a constant for every row)"
        )
    if template is not None and name != "reference":
        raise MappingError(f"{path}: {where} 'template' is only for [fields.reference]")
    if "value" not in raw and column is None and template is None:
        raise MappingError(f"{path}: {where} needs 'column = \"<header>\"' or 'value = <constant>'")
    allowed = FIELD_PARSE[name]
    kind = raw.get("parse", allowed[0])
    if kind not in allowed:
        raise MappingError(
            f"{path}: {where} parse = '{kind}' is not allowed for {name}; use one of: {', '.join(allowed)}"
        )
    lookup = raw.get("lookup")
    by = raw.get("by")
    if isinstance(lookup, str) and lookup.startswith(TENANT_PREFIX):
        by, kind = _check_tenant_lookup(path, where, name, lookup, by, raw), allowed[0]
    elif by is not None:
        raise MappingError(f"{path}: {where} 'by' is for look-ups against the tenant (lookup = \"bigchange:…\")")
    elif lookup is not None and lookup not in lookups:
        raise MappingError(
            f"{path}: {where} lookup '{lookup}' is not defined{_suggest(str(lookup), list(lookups))}; "
            f"add a [lookups.{lookup}] section or fix the name"
        )
    trim = raw.get("trim", True)
    if not isinstance(trim, bool):
        raise MappingError(f"{path}: {where} trim must be true or false")
    default = raw.get("default")
    if default is not None and column is None:
        raise MappingError(f"{path}: {where} 'default' needs a 'column' (it fills the column's blank cells)")
    spec = FieldSpec(name=name, column=column, parse=kind, lookup=lookup, trim=trim, template=template, by=by)
    if template is not None:
        _check_template(path, template)
    if default is not None:
        _check_value(path, where, spec, str(default), lookups, "default")
        spec = FieldSpec(**{**spec.__dict__, "default": str(default)})
    if "value" in raw:
        value = raw["value"]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MappingError(f"{path}: {where} value must be text in quotes or a whole number")
        parsed = _check_value(path, where, spec, str(value), lookups, "value")
        spec = FieldSpec(**{**spec.__dict__, "value": parsed})
    return spec


def _check_tenant_lookup(path: Path, where: str, name: str, lookup: str, by: Any, raw: dict[str, Any]) -> str:
    """The `by` of a look-up against the tenant (its default when absent); MappingError when it does not fit."""
    if lookup not in TENANT_LOOKUPS:
        raise MappingError(
            f"{path}: {where} lookup '{lookup}' is not a look-up against the tenant"
            f"{_suggest(lookup, list(TENANT_LOOKUPS))}; use one of: {', '.join(TENANT_LOOKUPS)}"
        )
    field_name, accepted = TENANT_LOOKUPS[lookup]
    if field_name != name:
        raise MappingError(
            f"{path}: {where} lookup '{lookup}' gives {field_name} ids; use it under [fields.{field_name}]"
        )
    by = accepted[0] if by is None else by
    if by not in accepted:
        raise MappingError(
            f"{path}: {where} by = '{by}' is not possible for {lookup}; use one of: {', '.join(accepted)}"
        )
    if "value" in raw:
        raise MappingError(f"{path}: {where} a constant 'value' cannot be looked up: give the BigChange id itself")
    if "parse" in raw:
        raise MappingError(f"{path}: {where} 'parse' does not go with lookup '{lookup}' (it gives ids); remove it")
    return str(by)


def _check_template(path: Path, template: Any) -> None:
    where = "[fields.reference]"
    if not isinstance(template, str) or not template.strip():
        raise MappingError(f'{path}: {where} template must be text like "LEG-{{Job No}}"')
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise MappingError(
            f"{path}: {where} template '{template}' is malformed ({exc}); write {{{{ for a literal {{"
        ) from None
    names = [name for _, name, _, _ in parts if name is not None]
    if not names:
        raise MappingError(
            f"{path}: {where} template '{template}' has no placeholder, so every row would get the same reference; "
            "add one like {row} or {Job No}"
        )
    for _, name, spec, conv in parts:
        if name == "" or spec or conv:
            raise MappingError(
                f"{path}: {where} template '{template}': write placeholders as a plain column name like {{Job No}} "
                "or {row} (no format codes)"
            )


def _load_custom_fields(path: Path, doc: dict[str, Any]) -> tuple[CustomField, ...]:
    out: list[CustomField] = []
    seen: dict[int, str] = {}
    for column, raw in _table(path, doc, "custom_fields").items():
        where = f'[custom_fields] "{column}"'
        spec = raw if isinstance(raw, dict) else {"definition_id": raw}
        _check_keys(path, where, spec, CUSTOM_KEYS)
        def_id, required, trim = spec.get("definition_id"), spec.get("required", False), spec.get("trim", True)
        if isinstance(def_id, bool) or not isinstance(def_id, int) or def_id <= 0:
            raise MappingError(
                f"{path}: {where} must be a custom field definition id (a whole number like 432632) "
                "or {definition_id = 432632, required = true}"
            )
        if not isinstance(required, bool) or not isinstance(trim, bool):
            raise MappingError(f"{path}: {where} required and trim must be true or false")
        types = spec.get("job_types")
        if types is not None and (
            not isinstance(types, list) or not types or not all(type(t) is int and t > 0 for t in types)
        ):
            raise MappingError(
                f"{path}: {where} job_types must be a list of job type ids like [101, 102] (the types this "
                "custom field belongs to)"
            )
        if def_id in seen:
            raise MappingError(
                f'{path}: [custom_fields] definition id {def_id} is mapped twice ("{seen[def_id]}" and "{column}"); '
                "keep one"
            )
        seen[def_id] = column
        out.append(
            CustomField(
                column=column,
                definition_id=def_id,
                required=required,
                trim=trim,
                job_types=tuple(types) if types is not None else None,
            )
        )
    return tuple(out)


def _load_limits(path: Path, doc: dict[str, Any]) -> Limits:
    raw = _table(path, doc, "limits")
    _check_keys(path, "[limits]", raw, LIMIT_KEYS)
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MappingError(f"{path}: [limits] {key} must be a whole number of characters ≥ 1")
    return Limits(**raw)


def _check_lookup_ids(path: Path, spec: FieldSpec, lookup: Lookup) -> None:
    """Every id of a lookup used by a field must parse as that field's type (else every hit would fail)."""
    if spec.parse == "text" or not lookup.table:
        return
    ids = pl.Series("id", list(lookup.table.values()), dtype=pl.String)
    parsed = pl.select(parse_value(spec.parse, pl.lit(ids))).to_series()
    bad = ids.filter(parsed.is_null())
    if len(bad):
        raise MappingError(
            f"{path}: [fields.{spec.name}] {lookup.where()} has id '{bad[0]}', "
            f"which is not valid for {spec.name} ({FIELD_HINT.get(spec.name, 'a uuid')}); fix the lookup"
        )


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file; MappingError ("<file>: [section.key] what is wrong; what to do")."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found; check the --mapping path") from None
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}; fix the syntax there") from None
    except UnicodeDecodeError:
        raise MappingError(f"{path}: not valid TOML: the file is not UTF-8; save it as UTF-8") from None
    for key in doc:
        if key not in SECTIONS:
            raise MappingError(
                f"{path}: unknown section '[{key}]'{_suggest(key, SECTIONS)}; allowed sections: {', '.join(SECTIONS)}"
            )
    source = _load_source(path, doc)
    lookups = {name: load_lookup(name, spec, path) for name, spec in _table(path, doc, "lookups").items()}
    fields: dict[str, FieldSpec] = {}
    for name, raw in _table(path, doc, "fields").items():
        if name not in API_FIELDS:
            raise MappingError(
                f"{path}: [fields.{name}] is not a field of POST /v1/jobs{_suggest(name, API_FIELDS)}; "
                f"valid fields: {', '.join(API_FIELDS)} (custom fields go under [custom_fields])"
            )
        fields[name] = _load_field(path, name, raw, lookups)
        if fields[name].lookup and not fields[name].tenant_lookup:
            _check_lookup_ids(path, fields[name], lookups[fields[name].lookup or ""])
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise MappingError(
                f"{path}: [fields.{name}] is missing; every job needs {name} (a column or a constant value)"
            )
    return Mapping(
        path=path,
        fields=fields,
        custom_fields=_load_custom_fields(path, doc),
        limits=_load_limits(path, doc),
        lookups=lookups,
        **source,
    )


# --- apply ----------------------------------------------------------------------------------------------------


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
    parsed = parse_value(spec.parse, pl.col("text")).cast(dtype)
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
        .otherwise(bad_value_expr(spec.name, spec.parse, pl.col("text")))
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
    columns.extend(_cell(cf.column, cf.trim, raw.trimmed).alias(cf.key) for cf in mapping.custom_fields)
    out = frame.select(columns)
    errors: list[pl.DataFrame] = []
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
