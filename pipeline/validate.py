"""The validate stage: check the typed job frame with a Pandera (polars) schema built from the mapping.

Every failing cell of every row is reported (lazy validation), mapped from pandera's positional index back to
the spreadsheet row, with the source column from the mapping and a message an analyst can act on. Rules that
span rows (duplicate references, rows the ledger could not tell apart) are computed here in polars.

Speed: every rule is first evaluated on every row in one parallel polars pass, as is or as a cheaper superset
(a text longer than the limit in UTF-8 bytes may be too long in UTF-16 units; a shorter one cannot be). Pandera
then validates the rows that first pass flags (and the schema itself, on zero rows when none is flagged) and
reports their failing cells; a row the first pass clears cannot fail any of pandera's checks. Duplicate references are
first looked for among 64-bit hashes (sorted, neighbours compared), and grouped exactly only on the rows whose
hash repeats.

Guard: `PANDERA_VALIDATION_ENABLED=False` or `PANDERA_VALIDATION_DEPTH=SCHEMA_ONLY` in the environment would
make pandera skip our checks silently; validation always runs with both forced on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

# (pandera imports its polars backends, and through them its strategies, on the first validation: importing them
# here makes that the import cost it is, paid when this module loads, not by the first file validated)
import pandera.backends.polars.builtin_checks
import pandera.backends.polars.checks
import pandera.backends.polars.components
import pandera.backends.polars.container  # noqa: F401
import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from pipeline.mapping import MappedTable, Mapping
from pipeline.mapping.parsers import UUID_PATTERN, bad_value_expr, text_of
from pipeline.model import API_FIELDS, CUSTOM_PREFIX, ERROR_SCHEMA, INT_FIELDS, ORIGIN_ROW, REQUIRED_FIELDS, ROW

INT32_MAX = 2_147_483_647
_SHOW_ROWS = 5
_ASTRAL = "[\U00010000-\U0010ffff]"

#: How messages name each API field.
LABELS: dict[str, str] = {
    "typeId": "job type",
    "contactId": "customer (contact)",
    "plannedDuration": "planned duration",
    "reference": "reference",
    "description": "description",
    "personId": "person",
    "orderNumber": "order number",
}


@dataclass
class Validation:
    """The job frame as validated, and every failing cell (ERROR_SCHEMA, sorted by row). The rows with no error
    at all are those `valid_mask` marks (what the plan stage reads, without copying them out of `frame`), or `valid`."""

    frame: pl.DataFrame
    errors: pl.DataFrame

    @cached_property
    def valid_mask(self) -> pl.Series:
        """True for the rows of `frame` with no error."""
        if self.errors.height == 0:
            return pl.repeat(True, self.frame.height, dtype=pl.Boolean, eager=True).alias("valid")
        failed = self.errors.get_column("row").unique().implode()
        return self.frame.select((~pl.col(ROW).is_in(failed)).alias("valid")).to_series()

    @cached_property
    def valid(self) -> pl.DataFrame:
        """The rows of `frame` with no error (a copy of them)."""
        return self.frame.filter(self.valid_mask)


def _check(code: str, rule: pl.Expr) -> pa.Check:
    """A vectorised column check; `code` comes back in failure_cases["check"]. Nulls pass (nullable decides)."""
    return pa.Check(lambda data: data.lazyframe.select(rule.fill_null(True)), name=code, error=code)


def utf16_length(text: pl.Expr) -> pl.Expr:
    """Length in UTF-16 code units, as the .NET API counts (an emoji counts 2)."""
    return text.str.len_chars().cast(pl.Int64) + text.str.count_matches(_ASTRAL).cast(pl.Int64)


def _max_length(column: str, limit: int) -> pa.Check:
    return _check(f"max_length:{limit}", utf16_length(pl.col(column)) <= limit)


@dataclass(frozen=True)
class _Rule:
    """One column check: `rule` (true = pass; null passes) as pandera runs it, and `may_fail`, an expression that
    is true at least wherever the rule fails (null counts as false), cheap to evaluate on every row."""

    column: str
    code: str
    rule: pl.Expr
    may_fail: pl.Expr


def _rules(mapping: Mapping) -> tuple[dict[str, bool], list[_Rule]]:
    """Column → nullable, and the checks of each column, for the schema of a job frame under `mapping`."""
    limits = mapping.limits

    def exact(column: str, code: str, rule: pl.Expr) -> _Rule:
        return _Rule(column, code, rule, ~rule)

    def max_length(column: str, limit: int) -> _Rule:
        # UTF-16 code units ≤ UTF-8 bytes (1-3 bytes → 1 unit, 4 bytes → 2 units)
        return _Rule(
            column, f"max_length:{limit}", utf16_length(pl.col(column)) <= limit, pl.col(column).str.len_bytes() > limit
        )

    uuid_rule = exact("personId", "uuid", pl.col("personId").str.contains(UUID_PATTERN))
    person = mapping.fields.get("personId")
    if person is not None and person.column is not None and person.parse == "uuid":
        # the map stage's uuid parser writes canonical uuids or null (a conversion error): none can fail
        uuid_rule = _Rule("personId", "uuid", uuid_rule.rule, pl.lit(False))
    nullable = {
        "typeId": False,
        "contactId": False,
        "plannedDuration": True,
        "reference": True,
        "description": True,
        "personId": True,
        "orderNumber": True,
    }
    rules = [
        exact("typeId", "positive", pl.col("typeId") > 0),
        exact("contactId", "positive", pl.col("contactId") > 0),
        exact("plannedDuration", "range", pl.col("plannedDuration").is_between(0, INT32_MAX)),
        max_length("reference", limits.reference),
        max_length("description", limits.description),
        uuid_rule,
    ]
    if limits.order_number:
        rules.append(max_length("orderNumber", limits.order_number))
    for cf in mapping.custom_fields:
        nullable[cf.key] = not cf.required
        rules.append(max_length(cf.key, limits.custom_field))
    assert all(f in nullable and not nullable[f] for f in REQUIRED_FIELDS)
    return nullable, rules


def build_schema(mapping: Mapping) -> pa.DataFrameSchema:
    """The Pandera schema of a job frame under `mapping` (typed columns; no coercion)."""
    nullable, rules = _rules(mapping)
    cols = {
        name: pa.Column(
            pl.Int64 if name in INT_FIELDS else pl.String,
            nullable=can_be_null,
            checks=[_check(r.code, r.rule) for r in rules if r.column == name],
        )
        for name, can_be_null in nullable.items()
    }
    return pa.DataFrameSchema(cols, strict=False, coerce=False, name="jobs")


def _may_fail(mapping: Mapping, frame: pl.DataFrame) -> pl.Series:
    """True for every row that may fail a check of the schema (one parallel pass over the frame)."""
    nullable, rules = _rules(mapping)
    expected = {name: pl.Int64 if name in INT_FIELDS else pl.String for name in nullable}
    if any(frame.schema.get(name) != dtype for name, dtype in expected.items()):
        return pl.repeat(True, frame.height, dtype=pl.Boolean, eager=True)  # pandera reports the schema problem
    flags = [pl.col(name).is_null() for name, can_be_null in nullable.items() if not can_be_null]
    flags += [r.may_fail.fill_null(False) for r in rules]
    return frame.select(pl.any_horizontal(flags).alias("may_fail")).to_series()


def _run_schema(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame:
    """pandera failure cases (failure_case, column, check, index) of `frame`; validation forced on."""
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as exc:
            failures = exc.failure_cases
        else:
            return pl.DataFrame(
                schema={"failure_case": pl.String, "column": pl.String, "check": pl.String, "index": pl.Int64}
            )
    schema_level = failures.filter(pl.col("index").is_null())
    if schema_level.height:
        # the frame comes from apply_mapping: a schema-level failure is a bug of ours, not of the user's file
        first = schema_level.row(0, named=True)
        raise RuntimeError(f"job frame does not match its schema: {first['column']}: {first['check']}")
    return failures.select("failure_case", "column", "check", pl.col("index").cast(pl.Int64))


def _label(mapping: Mapping, field: str) -> str:
    if field in LABELS:
        return LABELS[field]
    column = mapping.source_column(field)
    return f"'{column}'" if column else field


def _messages(failures: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """failure cases → (field, check, message) per failing cell, vectorised per (column, check) group."""
    parts: list[pl.DataFrame] = []
    for (field, check), group in failures.group_by("column", "check", maintain_order=True):
        field, check = str(field), str(check)
        label = _label(mapping, field)
        value = pl.col("failure_case")
        column = mapping.source_column(field)
        if check == "not_nullable":
            if field.startswith(CUSTOM_PREFIX):
                text = f"{label} is blank; the mapping makes it required, fill it in"
            elif column:
                text = f"{label} is blank; it is required, fill in '{column}'"
            else:
                text = f"{label} is missing; it is required, set it in the mapping"
            code, message = "required", pl.lit(text)
        elif check == "positive":
            code = "positive"
            message = text_of("'", value, f"' is not a valid {label} id; ids are whole numbers above 0 like 101")
        elif check == "range":
            code = "range"
            message = text_of(value, f" minutes is out of range; a planned duration is 0 to {INT32_MAX} minutes")
        elif check == "uuid":
            code, message = "uuid", bad_value_expr("personId", "uuid", value)
        elif check.startswith("max_length:"):
            limit = check.split(":", 1)[1]
            code = "max_length"
            message = text_of(
                f"{label} is ",
                utf16_length(value).cast(pl.String),
                f" characters long; the limit is {limit}, shorten it",
            )
        else:
            code, message = check, text_of(f"{label}: '", value, f"' fails {check}")
        parts.append(
            group.select(
                pl.col("index"),
                pl.lit(field).alias("field"),
                pl.lit(column, dtype=pl.String).alias("column"),
                pl.lit(code).alias("check"),
                message.alias("message"),
            )
        )
    if not parts:
        return pl.DataFrame(schema={"index": pl.Int64, **{k: v for k, v in ERROR_SCHEMA.items() if k != "row"}})
    return pl.concat(parts)


def _others(rows: pl.DataFrame, key: str) -> pl.DataFrame:
    """For rows sharing `key` with at least one other row: ROW and "5, 9 and 3 more" naming the others."""
    groups = (
        rows.group_by(key)
        .agg(pl.col(ROW).sort().head(_SHOW_ROWS + 1).alias("__first"), pl.len().alias("__n"))
        .filter(pl.col("__n") > 1)
    )
    if groups.height == 0:
        return pl.DataFrame(schema={ROW: pl.Int64, "__others": pl.String})
    joined = rows.join(groups, on=key)
    shown = pl.col("__first").list.set_difference(pl.concat_list(ROW)).list.sort().list.head(_SHOW_ROWS)
    listed = shown.list.eval(pl.element().cast(pl.String)).list.join(", ")
    more = pl.col("__n").cast(pl.Int64) - 1 - shown.list.len()
    text = pl.when(more > 0).then(text_of(listed, " and ", more.cast(pl.String), " more")).otherwise(listed)
    return joined.select(ROW, text.alias("__others"))


def _repeated(hashes: pl.Series) -> pl.Series:
    """True where a 64-bit hash (null: no key) is also another row's: a cheap superset of the rows whose key
    repeats (sorted hashes, neighbours compared), for the exact grouping to run on those rows only."""
    ordered = hashes.drop_nulls().sort()
    repeats = ordered.filter(ordered == ordered.shift(1))  # (not diff(): u64 → i64 overflows)
    if repeats.len() == 0:
        return pl.repeat(False, hashes.len(), dtype=pl.Boolean, eager=True)
    return hashes.is_in(repeats.unique().implode()).fill_null(False)


def _duplicates(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """Errors for duplicate references (case-insensitive) and for reference-less rows with identical payloads.

    Cheap filters first (repeated hashes of the lower-cased reference, of the payload columns), then the exact
    grouping and the messages on the few candidate rows only.
    """
    column = mapping.source_column("reference")
    content = [c for c in frame.columns if c not in (ROW, ORIGIN_ROW, "reference")]
    key = pl.col("reference").str.to_lowercase()
    refs = frame.get_column("reference")
    hashes = frame.select(pl.when(key.is_not_null()).then(key.hash()) if refs.null_count() else key.hash())
    with_ref = frame.filter(_repeated(hashes.to_series())).select(ROW, "reference", key.alias("__key"))
    dup_ref = _others(with_ref, "__key").join(with_ref.select(ROW, "reference"), on=ROW)
    ref_errors = _reference_errors(
        dup_ref,
        column,
        "duplicate_reference",
        text_of(
            "reference '",
            pl.col("reference"),
            "' is also used by row(s) ",
            pl.col("__others"),
            "; references must be unique in the file, change or remove the duplicates",
        ),
    )
    no_ref = frame.filter(refs.is_null()) if refs.null_count() > 1 else frame.clear()
    if no_ref.height and content:
        no_ref = no_ref.filter(_repeated(no_ref.select(pl.struct(content).hash()).to_series()))
    same = _others(no_ref.select(ROW, pl.struct(content).alias("__key")), "__key")
    same_errors = _reference_errors(
        same,
        column,
        "duplicate_job",
        text_of(
            "same job as row(s) ",
            pl.col("__others"),
            " and no reference, so the import could not tell them apart; add a reference to each row "
            "(or remove the duplicate)",
        ),
    )
    return pl.concat([ref_errors, same_errors])


def _reference_errors(rows: pl.DataFrame, column: str | None, check: str, message: pl.Expr) -> pl.DataFrame:
    """ERROR_SCHEMA rows on the reference field (and the column feeding it) for every row of `rows`."""
    return rows.select(
        pl.col(ROW).alias("row"),
        pl.lit("reference").alias("field"),
        pl.lit(column, dtype=pl.String).alias("column"),
        pl.lit(check).alias("check"),
        message.alias("message"),
    ).cast(ERROR_SCHEMA)  # type: ignore[arg-type]


def validate(mapped: MappedTable, mapping: Mapping) -> Validation:
    """Split the job frame into valid rows and every failing cell (mapping errors merged, sorted by row)."""
    frame = mapped.frame
    suspects = frame.filter(_may_fail(mapping, frame))
    failures = _run_schema(build_schema(mapping), suspects)
    positions = (
        suspects.select(pl.col(ROW).alias("row")).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
    )
    schema_errors = _messages(failures, mapping).join(positions, on="index", how="left").select(list(ERROR_SCHEMA))
    mapping_errors = mapped.errors.select(list(ERROR_SCHEMA)).cast(ERROR_SCHEMA)  # type: ignore[arg-type]
    # a cell that failed to convert is null in the frame: do not report it a second time as "required"
    schema_errors = schema_errors.join(
        mapping_errors.filter(pl.col("field").is_not_null()).select("row", "field").unique(),
        on=["row", "field"],
        how="anti",
    )
    errors = pl.concat(
        [mapping_errors, schema_errors.cast(ERROR_SCHEMA), _duplicates(frame, mapping)],  # type: ignore[arg-type]
        how="vertical",
    )
    order = {name: i for i, name in enumerate([*API_FIELDS, *(cf.key for cf in mapping.custom_fields)])}
    errors = (
        errors.with_columns(
            pl.col("field").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("__o")
        )
        .sort("row", "__o", maintain_order=True)
        .drop("__o")
    )
    return Validation(frame=frame, errors=errors)
