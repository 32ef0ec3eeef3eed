"""Validation of a POST /v1/jobs body: the JobCreate schema of openapi.yaml plus the business rules, hand-written
for speed, reporting every error of a body at once with ASP.NET-style keys (`TypeId`, `CustomFields[0].Value`).

Lengths count UTF-16 code units, as a .NET server does (an emoji counts 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.sandbox.data import UUID_RE, JobType, ReferenceData

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1

JOB_PROPERTIES = frozenset(
    ("typeId", "contactId", "plannedDuration", "reference", "description", "personId", "orderNumber", "customFields")
)
CUSTOM_FIELD_PROPERTIES = frozenset(("definitionId", "value"))

Errors = dict[str, list[str]]


@dataclass(frozen=True)
class Limits:
    reference: int = 40
    description: int = 500
    custom_value: int = 500


def utf16_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _add(errors: Errors, key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _int64(errors: Errors, key: str, value: Any, required: bool) -> int | None:
    if value is None:
        if required:
            _add(errors, key, f"The {key.rsplit('.', 1)[-1]} field is required.")
        return None
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        _add(errors, key, f"The value {_show(value)} is not valid for {key}: expected a whole number (int64).")
        return None
    return value


def _string(errors: Errors, key: str, value: Any, max_length: int | None) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        _add(errors, key, f"The value {_show(value)} is not valid for {key}: expected a string or null.")
        return None
    if max_length is not None and utf16_length(value) > max_length:
        _add(errors, key, f"The field {key} must be a string with a maximum length of {max_length}.")
    return value


def validate_create(body: dict[str, Any], data: ReferenceData, limits: Limits) -> Errors:
    """Every problem of a create body, keyed like ASP.NET model state; empty when the job can be created."""
    errors: Errors = {}
    for name in body:
        if name not in JOB_PROPERTIES:
            _add(errors, name, f"The property '{name}' is not allowed: JobCreate has no such property.")

    type_id = _int64(errors, "TypeId", body.get("typeId"), required=True)
    job_type = None
    if type_id is not None:
        job_type = data.job_types.get(type_id)
        if job_type is None:
            _add(errors, "TypeId", f"Job type {type_id} does not exist.")
        elif job_type.is_archived:
            _add(errors, "TypeId", f"Job type {type_id} ('{job_type.name}') is archived: no new job can use it.")

    contact_id = _int64(errors, "ContactId", body.get("contactId"), required=True)
    contact_ok = contact_id is not None and contact_id in data.contacts
    if contact_id is not None and not contact_ok:
        _add(errors, "ContactId", f"Contact {contact_id} does not exist.")

    duration = body.get("plannedDuration")
    if duration is not None:
        if type(duration) is not int:
            _add(errors, "PlannedDuration", f"The value {_show(duration)} is not valid for PlannedDuration.")
        elif not 0 <= duration <= INT32_MAX:
            _add(errors, "PlannedDuration", f"The field PlannedDuration must be between 0 and {INT32_MAX}.")

    _string(errors, "Reference", body.get("reference"), limits.reference)
    _string(errors, "Description", body.get("description"), limits.description)

    person = _string(errors, "PersonId", body.get("personId"), None)
    if person is not None:
        if not UUID_RE.match(person):
            _add(errors, "PersonId", f"The value {_show(person)} is not valid for PersonId: expected a uuid.")
        else:
            owner = data.person_contact.get(person.lower())
            if owner is None:
                _add(errors, "PersonId", f"Person {person} does not exist.")
            elif contact_ok and owner != contact_id:
                _add(errors, "PersonId", f"Person {person} is not a contact person of contact {contact_id}.")

    order = _string(errors, "OrderNumber", body.get("orderNumber"), None)
    if job_type is not None and job_type.is_order_number_required and (order is None or not order.strip()):
        _add(
            errors, "OrderNumber", f"The OrderNumber field is required for job type {job_type.id} ('{job_type.name}')."
        )

    if "customFields" in body:
        _custom_fields(errors, body["customFields"], job_type, limits)
    elif job_type is not None:
        _mandatory(errors, job_type, {})
    return errors


def _custom_fields(errors: Errors, items: Any, job_type: JobType | None, limits: Limits) -> None:
    if type(items) is not list:
        _add(errors, "CustomFields", f"The value {_show(items)} is not valid for CustomFields: expected an array.")
        return
    seen: dict[int, int] = {}
    values: dict[int, str | None] = {}
    for n, item in enumerate(items):
        key = f"CustomFields[{n}]"
        if type(item) is not dict:
            _add(errors, key, f"The value {_show(item)} is not valid for {key}: expected an object.")
            continue
        for name in item:
            if name not in CUSTOM_FIELD_PROPERTIES:
                _add(
                    errors,
                    f"{key}.{name}",
                    f"The property '{name}' is not allowed: a custom field has no such property.",
                )
        def_id = _int64(errors, f"{key}.DefinitionId", item.get("definitionId"), required=True)
        value = _string(errors, f"{key}.Value", item.get("value"), limits.custom_value)
        if def_id is None:
            continue
        if def_id in seen:
            _add(
                errors,
                f"{key}.DefinitionId",
                f"Custom field definition {def_id} appears more than once (also at CustomFields[{seen[def_id]}]).",
            )
            continue
        seen[def_id] = n
        values[def_id] = value
        if job_type is not None and def_id not in job_type.definitions:
            _add(
                errors,
                f"{key}.DefinitionId",
                f"Custom field definition {def_id} does not belong to job type {job_type.id} ('{job_type.name}').",
            )
    if job_type is not None:
        _mandatory(errors, job_type, values)


def _mandatory(errors: Errors, job_type: JobType, values: dict[int, str | None]) -> None:
    for definition in job_type.definitions.values():
        if definition.mandatory:
            value = values.get(definition.id)
            if value is None or not value.strip():
                _add(
                    errors,
                    "CustomFields",
                    f"The custom field '{definition.label}' (definition {definition.id}) is required "
                    f"for job type {job_type.id} ('{job_type.name}').",
                )
