"""The map stage, loaded: read a mapping file (`mappings/*.toml`) and check it, without the input.

`load_mapping` checks everything that can be checked without the input (keys, fields, parsers, lookups,
constants, defaults) and raises one-line MappingErrors naming the file and the key; it returns a `Mapping`.
Applying it to a raw table is pipeline/mapping/apply.py.
"""

from __future__ import annotations

import difflib
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MappingError
from pipeline.mapping.lookups import TENANT_LOOKUPS, TENANT_PREFIX, Lookup, load_lookup
from pipeline.mapping.parsers import FIELD_HINT, bad_value_expr, parse_scalar, parse_value
from pipeline.mapping.units import UNITS
from pipeline.model import API_FIELDS, CUSTOM_PREFIX, REQUIRED_FIELDS
from pipeline.read.limits import ReadLimits

SECTIONS = ("source", "fields", "custom_fields", "lookups", "limits")
SOURCE_KEYS = ("sheet", "header_row", "encoding", "delimiter", *ReadLimits.names())
FIELD_KEYS = ("column", "value", "default", "parse", "unit", "lookup", "by", "trim", "template")
CUSTOM_KEYS = ("definition_id", "required", "trim", "job_types", "parse", "unit")
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
    unit: str | None = None  # parse = "duration": the unit of plain numbers ("minutes", "hours"; see units.py)

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
    parse: str = "text"  # "duration": the cell is sent as its number of minutes
    unit: str | None = None  # parse = "duration": the unit of plain numbers

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
    read_limits: ReadLimits = field(
        default_factory=ReadLimits
    )  # what the input file may cost ([source] max_*; pipeline/read/limits.py)
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


def bad_value_message(field_name: str, kind: str, text: str, unit: str | None = None) -> str:
    """The analyst message for a value of `field_name` that did not parse (one value; see `bad_value_expr`)."""
    return pl.select(bad_value_expr(field_name, kind, pl.lit(text, dtype=pl.String), unit)).item()


def _check_unit(path: Path, where: str, raw: dict[str, Any], kind: str) -> str | None:
    """The `unit` of a duration field (None when absent); MappingError when it is not one or not for this parse."""
    unit = raw.get("unit")
    if unit is None:
        return None
    if kind != "duration":
        raise MappingError(f'{path}: {where} unit is for durations only (parse = "duration"); remove it')
    if unit not in UNITS:
        raise MappingError(
            f'{path}: {where} unit = {unit!r} is not a unit; use unit = "minutes" or unit = "hours" '
            "(the unit of the column's plain numbers)"
        )
    return str(unit)


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
    given = {key: source[key] for key in ReadLimits.names() if key in source}
    for key, value in given.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MappingError(f"{path}: [source] {key} must be a whole number ≥ 1 (got {value!r})")
    return {
        "sheet": source.get("sheet"),
        "header_row": header_row,
        "encoding": source.get("encoding"),
        "delimiter": delimiter,
        "read_limits": ReadLimits(**given),
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
    parsed = parse_scalar(spec.parse, text, spec.unit)
    if parsed is None:
        raise MappingError(f"{path}: {where} {what} {bad_value_message(spec.name, spec.parse, text, spec.unit)}")
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
    unit = _check_unit(path, where, raw, kind)
    spec = FieldSpec(
        name=name, column=column, parse=kind, lookup=lookup, trim=trim, template=template, by=by, unit=unit
    )
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
        kind = spec.get("parse", "text")
        if kind not in ("text", "duration"):
            raise MappingError(
                f'{path}: {where} parse = {kind!r} is not possible for a custom field; use "text" or "duration"'
            )
        unit = _check_unit(path, where, spec, kind)
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
                parse=kind,
                unit=unit,
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
    parsed = pl.select(parse_value(spec.parse, pl.lit(ids), spec.unit)).to_series()
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
