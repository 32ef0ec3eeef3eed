"""Pre-flight: every row checked against the tenant's reference data as the API would check it, before sending.

With the reference data of pipeline/tenant/refdata.py (`validate --online`; `run` unless `--no-preflight`), a row is
`invalid` — never sent — when its job type does not exist or is archived, when its job type requires an order
number and it has none, when its contact does not exist, when its person is not a contact person of its
contact, or when it fills a custom field whose mapping declares `job_types = [...]` and its job type is not one
of them. The error sits on the cell that fed the field, with the API's wording (pipeline/sandbox/rules.py) and
what to do. Everything is a join of the job frame with small tables of the tenant's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.mapping import Mapping
from pipeline.mapping.parsers import text_of
from pipeline.model import ERROR_SCHEMA, ROW
from pipeline.validate import Validation


@dataclass(frozen=True)
class Preflight:
    validation: Validation  # the validation with the pre-flight's errors merged in
    caught: int  # rows that passed every offline check and were caught by the pre-flight
    errors: int  # pre-flight cell errors
    rows: int = 0  # rows with a pre-flight error (also those that failed other checks)


def _errors(frame: pl.DataFrame, mask: pl.Expr, field: str, column: str | None, check: str, message: pl.Expr) -> Any:
    return frame.filter(mask.fill_null(False)).select(
        pl.col(ROW).alias("row"),
        pl.lit(field, dtype=pl.String).alias("field"),
        pl.lit(column, dtype=pl.String).alias("column"),
        pl.lit(check, dtype=pl.String).alias("check"),
        message.cast(pl.String).alias("message"),
    )


def _id(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String)


def check_rows(validation: Validation, mapping: Mapping, source: Any) -> Preflight:
    """The pre-flight of a validated job frame against `source` (a pipeline.tenant.TenantSource)."""
    frame = validation.frame
    contact_ids = frame.get_column("contactId").drop_nulls().unique().to_list()
    with_person = frame.filter(pl.col("personId").is_not_null()).get_column("contactId").drop_nulls().unique()
    data = source.persons_of(with_person.to_list()) if with_person.len() else source.data
    types = pl.DataFrame(
        {
            "typeId": [int(t["id"]) for t in data.job_types],
            "__type_name": [str(t.get("name") or "") for t in data.job_types],
            "__archived": [bool(t.get("isArchived")) for t in data.job_types],
            "__order_required": [bool(t.get("isOrderNumberRequired")) for t in data.job_types],
        },
        schema={"typeId": pl.Int64, "__type_name": pl.String, "__archived": pl.Boolean, "__order_required": pl.Boolean},
    )
    persons = pl.DataFrame(
        {
            "__person": [str(p["id"]).lower() for p in data.persons if p.get("id")],
            "__person_contact": [p.get("contactId") for p in data.persons if p.get("id")],
        },
        schema={"__person": pl.String, "__person_contact": pl.Int64},
    ).unique("__person")
    known_contacts = pl.Series([c for c in contact_ids if c in data.contact_by_id], dtype=pl.Int64).implode()
    rows = frame.join(types, on="typeId", how="left", maintain_order="left").join(
        persons, left_on=pl.col("personId").str.to_lowercase(), right_on="__person", how="left", maintain_order="left"
    )
    type_id, name = _id(pl.col("typeId")), pl.col("__type_name")
    col = mapping.source_column
    order_col = col("orderNumber")
    fill_order = f"fill in '{order_col}'" if order_col else "map an order number column ([fields.orderNumber])"
    type_exists = pl.col("__archived").is_not_null()
    parts = [
        _errors(
            rows,
            pl.col("typeId").is_not_null() & ~type_exists,
            "typeId",
            col("typeId"),
            "job_type",
            text_of("Job type ", type_id, " does not exist; use one of the tenant's job types (jobimport tenant pull)"),
        ),
        _errors(
            rows,
            pl.col("__archived"),
            "typeId",
            col("typeId"),
            "job_type_archived",
            text_of("Job type ", type_id, " ('", name, "') is archived: no new job can use it; choose an active type"),
        ),
        _errors(
            rows,
            pl.col("__order_required") & pl.col("orderNumber").str.strip_chars().replace("", None).is_null(),
            "orderNumber",
            order_col,
            "order_number_required",
            text_of("The OrderNumber field is required for job type ", type_id, " ('", name, f"'); {fill_order}"),
        ),
        _errors(
            rows,
            pl.col("contactId").is_not_null() & ~pl.col("contactId").is_in(known_contacts),
            "contactId",
            col("contactId"),
            "contact",
            text_of("Contact ", _id(pl.col("contactId")), " does not exist; correct the customer"),
        ),
        _errors(
            rows,
            pl.col("personId").is_not_null()
            & pl.col("contactId").is_in(known_contacts)
            & (pl.col("__person_contact").is_null() | (pl.col("__person_contact") != pl.col("contactId"))),
            "personId",
            col("personId"),
            "person_contact",
            text_of(
                "Person ",
                pl.col("personId"),
                " is not a contact person of contact ",
                _id(pl.col("contactId")),
                "; use one of that contact's persons or leave it blank",
            ),
        ),
    ]
    for cf in mapping.custom_fields:
        if cf.job_types is None:
            continue
        allowed = ", ".join(str(t) for t in cf.job_types)
        parts.append(
            _errors(
                rows,
                pl.col(cf.key).is_not_null() & type_exists & ~pl.col("typeId").is_in(list(cf.job_types)),
                cf.key,
                cf.column,
                "custom_field_job_type",
                text_of(
                    f"Custom field definition {cf.definition_id} does not belong to job type ",
                    type_id,
                    " ('",
                    name,
                    f"'); the mapping declares it for job types {allowed}: leave '{cf.column}' blank on this row "
                    "or change the job type",
                ),
            )
        )
    found = pl.concat([p.cast(ERROR_SCHEMA) for p in parts], how="vertical")
    before = set(validation.errors.get_column("row").unique().to_list())
    refused = set(found.get_column("row").unique().to_list())
    caught = len(refused - before)
    merged = pl.concat([validation.errors.cast(ERROR_SCHEMA), found], how="vertical").sort("row", maintain_order=True)  # type: ignore[arg-type]
    return Preflight(Validation(frame=frame, errors=merged), caught, found.height, len(refused))


def tenant_for(
    mapping: Mapping,
    *,
    online: bool,
    best_effort: bool,
    settings: Any,
    max_age_s: float,
    say: Any = None,
    home: Any = None,
) -> tuple[Any, str | None]:
    """The tenant's reference data for a run (pipeline.tenant.TenantSource) or None, and why it is missing.

    Needed (failure ends the run, exit 3) with `online` or when the mapping looks values up against the tenant;
    with `best_effort` (a real run's pre-flight) a failure to fetch it only skips the pre-flight: the API stays
    the final word, and the run stops on the same problem in its usual way if it really is one. `settings` is a
    Settings or a callable returning one."""
    required = online or bool(mapping.tenant_fields)
    if not required and not best_effort:
        return None, None
    from pipeline import logs
    from pipeline.errors import RunStopped, TransientError
    from pipeline.tenant.refdata import TenantSource

    logs.quiet_unless_configured()
    resolved = settings() if callable(settings) else settings
    if required:
        return TenantSource(resolved, max_age_s=max_age_s, say=say, home=home), None
    try:
        return TenantSource(resolved, max_age_s=max_age_s, say=say, attempts=2, home=home), None
    except (RunStopped, TransientError) as exc:  # AuthRefused is a RunStopped
        reason = str(exc).removeprefix("the tenant's reference data could not be fetched: ")
        return None, f"Pre-flight skipped: the tenant's reference data could not be fetched ({reason})."
