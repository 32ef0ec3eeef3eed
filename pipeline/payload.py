"""The plan stage: one compact JSON body of POST /v1/jobs per valid row, and the row's ledger key.

The JSON is built vectorised: each present field becomes a `"name":value` fragment (strings encoded by polars'
JSON encoder, which escapes exactly like `json.dumps(..., ensure_ascii=False)`), and the fragments of a row are
joined. Absent optional fields are omitted, never sent as null; custom fields come in mapping order, blank
values omitted, and there is no `customFields` key when a row has none. The key is the reference when the row
has one, else "fp:" + the sha256 hex digest of the payload's UTF-8 bytes.
"""

from __future__ import annotations

import hashlib

import polars as pl

from pipeline.mapping import Mapping
from pipeline.model import API_FIELDS, INT_FIELDS, ORIGIN_ROW, ROW

FINGERPRINT_PREFIX = "fp:"


#: characters JSON must escape; a string without any of them is its own JSON body between quotes.
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _encode(values: pl.Series) -> pl.Series:
    """polars' JSON encoding of each string (with its quotes)."""
    return (
        pl.DataFrame({"v": values})
        .select(pl.struct("v").struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}"))
        .to_series()
    )


def json_strings(values: pl.Series, before: str = "", after: str = "") -> pl.Series:
    """`before` + the JSON string literal (with quotes) + `after` for each value; null stays null.

    Most cells need no escaping, so they are only quoted; the others go through polars' JSON encoder.
    """
    plain = pl.select(pl.concat_str([pl.lit(before + '"'), pl.lit(values), pl.lit('"' + after)])).to_series()
    needs = values.str.contains(_NEEDS_ESCAPE).fill_null(False)
    if not needs.any():
        return plain.alias(values.name)
    where = needs.arg_true()
    encoded = before + _encode(values.gather(where)) + after
    return plain.scatter(where, encoded).alias(values.name)


def _fragment(name: str, frame: pl.DataFrame) -> pl.Series:
    """`"name":value` per row, null where the value is null (the field is then omitted)."""
    col = frame.get_column(name)
    if name in INT_FIELDS:
        return pl.select(pl.concat_str([pl.lit(f'"{name}":'), pl.lit(col).cast(pl.String)])).to_series().alias(name)
    return json_strings(col, before=f'"{name}":')


def _custom_fields(frame: pl.DataFrame, mapping: Mapping) -> pl.Series | None:
    if not mapping.custom_fields:
        return None
    items = [
        pl.lit(
            json_strings(frame.get_column(cf.key), before=f'{{"definitionId":{cf.definition_id},"value":', after="}")
        )
        for cf in mapping.custom_fields
    ]
    joined = pl.concat_str(items, separator=",", ignore_nulls=True)
    return pl.select(
        pl.when(joined.str.len_bytes() > 0).then(pl.concat_str([pl.lit('"customFields":['), joined, pl.lit("]")]))
    ).to_series()


def payloads(frame: pl.DataFrame, mapping: Mapping) -> pl.Series:
    """The compact JSON body of POST /v1/jobs for each row of a job frame."""
    fragments = [_fragment(name, frame) for name in API_FIELDS]
    custom = _custom_fields(frame, mapping)
    if custom is not None:
        fragments.append(custom)
    body = pl.concat_str([pl.lit(f) for f in fragments], separator=",", ignore_nulls=True)
    return pl.select(pl.concat_str([pl.lit("{"), body, pl.lit("}")])).to_series().alias("payload")


def _sha256(payloads: pl.Series) -> pl.Series:
    return pl.Series(
        [None if p is None else hashlib.sha256(p.encode("utf-8")).hexdigest() for p in payloads], dtype=pl.String
    )


def plan_payloads(valid: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """ROW, ORIGIN_ROW, key, reference, payload (compact JSON, exactly the POST /v1/jobs body) per valid row."""
    planned = valid.select(
        pl.col(ROW),
        pl.col(ORIGIN_ROW),
        pl.col("reference").cast(pl.String),
    ).with_columns(payloads(valid, mapping))
    no_ref = planned["reference"].is_null()
    fingerprints = _sha256(planned["payload"].filter(no_ref))
    keys = planned.select(pl.col("reference")).to_series().alias("key")
    if no_ref.any():
        keys = keys.scatter(no_ref.arg_true(), FINGERPRINT_PREFIX + fingerprints)
    return planned.with_columns(keys).select(ROW, ORIGIN_ROW, "key", "reference", "payload")
