"""The validate stage: check the typed job frame with a Pandera (polars) schema built from the mapping.

Every failing cell of every row is reported (lazy validation), mapped from pandera's positional index back to
the spreadsheet row, with the source column from the mapping and a message an analyst can act on. Rules that
span rows (duplicate references, rows the ledger could not tell apart) are computed here in polars.

One definition per rule: each rule is a `Rule` (its column, its check as a polars expression, its message, and
optionally a cheaper superset of its failures), built by one constructor per kind of rule and listed once in
`_rules`; the pandera schema, the first pass and the messages are all generated from that list, so adding a rule
is one edit. Blank required cells are pandera's own `nullable` check.

Speed: every rule is first evaluated on every row in one parallel polars pass, as is or as its cheaper superset
(a text longer than the limit in UTF-8 bytes may be too long in UTF-16 units; a shorter one cannot be). Pandera
then validates the rows that first pass flags (and the schema itself, on zero rows when none is flagged) and
collects their failing cells; a row the first pass clears cannot fail any of pandera's checks. Duplicate references are
first looked for among 64-bit hashes (sorted, neighbours compared), and grouped exactly only on the rows whose
hash repeats.

Guard: `PANDERA_VALIDATION_ENABLED=False` or `PANDERA_VALIDATION_DEPTH=SCHEMA_ONLY` in the environment would
make pandera skip our checks silently; validation always runs with both forced on.
"""

from __future__ import annotations

from collections.abc import Callable
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


def utf16_length(text: pl.Expr) -> pl.Expr:
    """Length in UTF-16 code units, as the .NET API counts (an emoji counts 2)."""
    return text.str.len_chars().cast(pl.Int64) + text.str.count_matches(_ASTRAL).cast(pl.Int64)


Message = Callable[[pl.Expr], pl.Expr]


@dataclass(frozen=True)
class Rule:
    """One validation rule, stated once: everything else is generated from it.

    - `passes`: true where the cell is valid (null passes: blanks are the business of `nullable`); it becomes the
      pandera check `name` on `column`;
    - `message`: the analyst's message, from the failing value;
    - `may_fail`: true at least wherever the rule fails (null counts as false), cheap enough for every row: the
      rows it flags are the ones pandera validates (default: not `passes`; a text rule may give a cheaper
      superset, e.g. UTF-8 bytes for a UTF-16 length);
    - `code`: the `check` reported (default `name`).
    """

    column: str
    name: str
    passes: pl.Expr
    message: Message
    may_fail: pl.Expr | None = None
    code: str | None = None

    def check(self) -> pa.Check:
        passes = self.passes.fill_null(True)
        return pa.Check(lambda data: data.lazyframe.select(passes), name=self.name, error=self.name)

    @property
    def flags(self) -> pl.Expr:
        return (self.may_fail if self.may_fail is not None else ~self.passes).fill_null(False)


# --- the rules: one constructor per kind of rule, one line per rule in `_rules` ----------------------------------


def positive_id(field: str, label: str) -> Rule:
    return Rule(
        field,
        "positive",
        pl.col(field) > 0,
        lambda v: text_of("'", v, f"' is not a valid {label} id; ids are whole numbers above 0 like 101"),
    )


def minutes_range(field: str) -> Rule:
    return Rule(
        field,
        "range",
        pl.col(field).is_between(0, INT32_MAX),
        lambda v: text_of(v, f" minutes is out of range; a planned duration is 0 to {INT32_MAX} minutes"),
    )


def max_length(field: str, label: str, limit: int) -> Rule:
    # UTF-16 code units ≤ UTF-8 bytes (1-3 bytes → 1 unit, 4 bytes → 2 units): a text within the limit in bytes
    # is within it in units
    return Rule(
        field,
        f"max_length:{limit}",
        utf16_length(pl.col(field)) <= limit,
        lambda v: text_of(
            f"{label} is ", utf16_length(v).cast(pl.String), f" characters long; the limit is {limit}, shorten it"
        ),
        may_fail=pl.col(field).str.len_bytes() > limit,
        code="max_length",
    )


def person_uuid(field: str, parsed: bool) -> Rule:
    return Rule(
        field,
        "uuid",
        pl.col(field).str.contains(UUID_PATTERN),
        lambda v: bad_value_expr("personId", "uuid", v),
        # the map stage's uuid parser writes canonical uuids or null (a conversion error): none can fail then
        may_fail=pl.lit(False) if parsed else None,
    )


def required_message(label: str, column: str | None, custom: bool) -> str:
    """The message of a blank cell in a required column (pandera's `not_nullable`)."""
    if custom:
        return f"{label} is blank; the mapping makes it required, fill it in"
    if column:
        return f"{label} is blank; it is required, fill in '{column}'"
    return f"{label} is missing; it is required, set it in the mapping"


def _label(mapping: Mapping, field: str) -> str:
    if field in LABELS:
        return LABELS[field]
    column = mapping.source_column(field)
    return f"'{column}'" if column else field


def _rules(mapping: Mapping) -> tuple[dict[str, bool], list[Rule]]:
    """Column → nullable, and every rule, for a job frame under `mapping`. A new rule is one line here (with a
    constructor above when it is a new kind)."""
    limits = mapping.limits
    label = {name: _label(mapping, name) for name in [*API_FIELDS, *(cf.key for cf in mapping.custom_fields)]}
    person = mapping.fields.get("personId")
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
        positive_id("typeId", label["typeId"]),
        positive_id("contactId", label["contactId"]),
        minutes_range("plannedDuration"),
        max_length("reference", label["reference"], limits.reference),
        max_length("description", label["description"], limits.description),
        person_uuid("personId", person is not None and person.column is not None and person.parse == "uuid"),
    ]
    if limits.order_number:
        rules.append(max_length("orderNumber", label["orderNumber"], limits.order_number))
    for cf in mapping.custom_fields:
        nullable[cf.key] = not cf.required
        rules.append(max_length(cf.key, label[cf.key], limits.custom_field))
    assert all(f in nullable and not nullable[f] for f in REQUIRED_FIELDS)
    return nullable, rules


def build_schema(mapping: Mapping) -> pa.DataFrameSchema:
    """The Pandera schema of a job frame under `mapping` (typed columns; no coercion), generated from `_rules`."""
    nullable, rules = _rules(mapping)
    cols = {
        name: pa.Column(
            pl.Int64 if name in INT_FIELDS else pl.String,
            nullable=can_be_null,
            checks=[r.check() for r in rules if r.column == name],
        )
        for name, can_be_null in nullable.items()
    }
    return pa.DataFrameSchema(cols, strict=False, coerce=False, name="jobs")


def _may_fail(mapping: Mapping, frame: pl.DataFrame) -> pl.Series:
    """True for every row that may fail a rule (one parallel pass over the frame), generated from `_rules`."""
    nullable, rules = _rules(mapping)
    expected = {name: pl.Int64 if name in INT_FIELDS else pl.String for name in nullable}
    if any(frame.schema.get(name) != dtype for name, dtype in expected.items()):
        return pl.repeat(True, frame.height, dtype=pl.Boolean, eager=True)  # pandera reports the schema problem
    flags = [pl.col(name).is_null() for name, can_be_null in nullable.items() if not can_be_null]
    flags += [r.flags for r in rules]
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


def _messages(failures: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """failure cases → (field, check, message) per failing cell, vectorised per (column, check) group; each
    message comes from its rule (`Rule.message`, `required_message`)."""
    _, rules = _rules(mapping)
    by_name = {(r.column, r.name): r for r in rules}
    parts: list[pl.DataFrame] = []
    for (field, check), group in failures.group_by("column", "check", maintain_order=True):
        field, check = str(field), str(check)
        column = mapping.source_column(field)
        rule = by_name.get((field, check))
        value = pl.col("failure_case")
        if check == "not_nullable":
            text = required_message(_label(mapping, field), column, field.startswith(CUSTOM_PREFIX))
            code, message = "required", pl.lit(text)
        elif rule is not None:
            code, message = rule.code or rule.name, rule.message(value)
        else:  # a check pandera added itself (none today)
            code, message = check, text_of(f"{_label(mapping, field)}: '", value, f"' fails {check}")
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
