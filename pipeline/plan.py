"""The plan stage: one compact JSON body of POST /v1/jobs per valid row, and the row's ledger key.

Absent optional fields are omitted, never sent as null; custom fields come in mapping order, blank values
omitted, and there is no `customFields` key when a row has none; strings are escaped exactly like
`json.dumps(..., ensure_ascii=False)`. The key is the reference when the row has one, else "fp:" + the sha256 hex
digest of the payload's UTF-8 bytes.

The JSON is built in one vectorised polars query (one `concat_str` per row over literal text and the columns),
over the kept rows' API columns only. A string column none of whose cells needs escaping (no `"`, `\\` or
control character: one parallel check per column) goes in between quotes as it is; the others are encoded by
polars' JSON encoder, which escapes exactly like `json.dumps(..., ensure_ascii=False)`. A column without nulls is
spliced straight into the row's text; a column with nulls becomes a member that is skipped where the value is
null.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from pipeline.mapping import Mapping
from pipeline.model import API_FIELDS, INT_FIELDS, ORIGIN_ROW, ROW

FINGERPRINT_PREFIX = "fp:"

#: characters JSON must escape; a string without any of them is its own JSON body between quotes (looked for with
#: one Aho-Corasick pass per column: twice as fast as the equivalent regex class)
_NEEDS_ESCAPE = ['"', "\\", *map(chr, range(0x20))]


Piece = str | pl.Expr  # literal text or a column expression, to be concatenated


def _concat(pieces: list[Piece], *, ignore_nulls: bool = False) -> pl.Expr:
    """concat_str of `pieces`, adjacent literal texts merged (fewer pieces: less work per row)."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    exprs = [pl.lit(p, dtype=pl.String) if isinstance(p, str) else p for p in merged]
    return pl.concat_str(exprs, ignore_nulls=ignore_nulls)


def _json_value(column: str, is_int: bool, clean: bool) -> list[Piece]:
    """The JSON value of `column` as pieces to concatenate (null where the cell is null)."""
    col = pl.col(column)
    if is_int:
        return [col]
    if clean:
        return ['"', col, '"']
    # {"":"…"} → "…"
    encoded = pl.struct(col.alias("")).struct.json_encode().str.slice(4).str.head(-1)
    return [pl.when(col.is_not_null()).then(encoded)]


def payloads(frame: pl.DataFrame, mapping: Mapping) -> pl.Series:
    """The compact JSON body of POST /v1/jobs for each row of a job frame (one polars query)."""
    custom = [(cf.key, cf.definition_id) for cf in mapping.custom_fields]
    texts = [name for name in API_FIELDS if name not in INT_FIELDS] + [key for key, _ in custom]
    # a field parsed as a uuid is canonical (hex digits and dashes): no need to look
    canonical = {name for name, spec in mapping.fields.items() if spec.parse == "uuid"}
    unknown = [c for c in texts if c not in canonical]
    escaped = frame.select(pl.col(c).str.contains_any(_NEEDS_ESCAPE).any() for c in unknown).row(0) if unknown else ()
    clean = canonical | {c for c, esc in zip(unknown, escaped, strict=True) if not esc}
    solid = {c for c in (*API_FIELDS, *texts) if frame.get_column(c).null_count() == 0}

    def value(column: str) -> list[Piece]:
        return _json_value(column, column in INT_FIELDS, column in clean)

    # members: (pieces of `"name":value`, present in every row)
    members: list[tuple[list[Piece], bool]] = [([f'"{name}":', *value(name)], name in solid) for name in API_FIELDS]
    if custom:
        items = [([f'{{"definitionId":{def_id},"value":', *value(key), "}"], key in solid) for key, def_id in custom]
        if all(present for _, present in items):
            pieces: list[Piece] = ['"customFields":[']
            for i, (item, _) in enumerate(items):
                pieces += [",", *item] if i else item
            members.append(([*pieces, "]"], True))
        else:
            parts = [_concat(item) for item, _ in items]
            joined = pl.concat_str(parts, separator=",", ignore_nulls=True) if len(parts) > 1 else parts[0]
            listed = pl.when(pl.any_horizontal(pl.col(key).is_not_null() for key, _ in custom)).then(joined)
            members.append((['"customFields":[', listed, "]"], False))

    if members[0][1]:
        # the first member is in every row: it carries the "{", every other one its leading ","
        body: list[Piece] = ["{"]
        for i, (pieces, present) in enumerate(members):
            lead = [","] if i else []
            body += [*lead, *pieces] if present else [_concat([*lead, *pieces])]
        payload = _concat([*body, "}"], ignore_nulls=True)
    else:
        joined = pl.concat_str([_concat(pieces) for pieces, _ in members], separator=",", ignore_nulls=True)
        payload = pl.concat_str([pl.lit("{"), joined, pl.lit("}")])
    return frame.select(payload.alias("payload")).to_series()


def _sha256(payloads: pl.Series) -> pl.Series:
    """sha256 hex digest of each payload's UTF-8 bytes (payloads without nulls)."""
    sha256 = hashlib.sha256
    return pl.Series([sha256(p.encode("utf-8")).hexdigest() for p in payloads.to_list()], dtype=pl.String)


@dataclass(frozen=True)
class Plan:
    """What a run sends: one row per valid source row (ROW, ORIGIN_ROW, key, reference) and the API columns its
    payload text is made from, a slice at a time when it is needed, so a million payloads are never all held."""

    rows: pl.DataFrame
    source: pl.DataFrame
    mapping: Mapping

    @property
    def height(self) -> int:
        return self.rows.height

    def payload_slice(self, offset: int, length: int) -> pl.Series:
        """The payload texts of plan rows offset … offset+length-1 (the same text `plan_payloads` gives)."""
        return payloads(self.source.slice(offset, length), self.mapping)

    def payloads_at(self, indices: list[int]) -> pl.Series:
        """The payload texts of the plan rows at these positions, in that order."""
        if not indices:
            return pl.Series("payload", [], dtype=pl.String)
        return payloads(self.source[indices], self.mapping)

    def with_payloads(self, offset: int, length: int) -> pl.DataFrame:
        """ROW, ORIGIN_ROW, key, reference, payload of one slice of the plan."""
        return self.rows.slice(offset, length).with_columns(self.payload_slice(offset, length))


def plan(frame: pl.DataFrame, mapping: Mapping, keep: pl.Series | None = None) -> Plan:
    """The plan of the rows of `frame` that `keep` marks (all when None): their keys (the reference, else "fp:" + the
    sha256 of the payload, computed here for those rows only) and what their payloads are made of."""
    columns = [ROW, ORIGIN_ROW, *API_FIELDS, *(cf.key for cf in mapping.custom_fields)]
    kept = frame.select(columns) if keep is None else frame.select(columns).filter(keep)
    rows = kept.select(ROW, ORIGIN_ROW, pl.col("reference").cast(pl.String))
    no_ref = rows["reference"].is_null()
    keys = rows.get_column("reference").alias("key")
    if no_ref.any():
        fingerprints = _sha256(payloads(kept.filter(no_ref), mapping))
        keys = keys.scatter(no_ref.arg_true(), FINGERPRINT_PREFIX + fingerprints)
    return Plan(rows.with_columns(keys).select(ROW, ORIGIN_ROW, "key", "reference"), kept, mapping)


def plan_payloads(frame: pl.DataFrame, mapping: Mapping, keep: pl.Series | None = None) -> pl.DataFrame:
    """ROW, ORIGIN_ROW, key, reference, payload (compact JSON, exactly the POST /v1/jobs body) per row of a job
    frame of valid rows, or per row of `frame` that `keep` (a Boolean mask: Validation.valid_mask) marks: the
    whole plan with every payload at once (tests, benchmarks; a run takes them a slice at a time)."""
    planned = plan(frame, mapping, keep)
    return planned.with_payloads(0, planned.height)
