"""Generated legacy exports for the tenant tests: job type *names*, customer *references*, person uuids, durations in
mixed notations, order numbers, custom fields — with the mistakes a real export has (custom field on a job type
it does not belong to, no order number where the type requires one, an archived type, a person of another
contact, plus a few offline mistakes). Each row also carries the body the sandbox would get if the row were sent
as it is, so a test can ask the sandbox's own rules which rows it would refuse.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.sandbox.data import ReferenceData, load_reference_data

#: Header vocabularies of three legacy systems: API field (or custom field label) → header.
VOCABULARIES: list[dict[str, str]] = [
    {
        "reference": "Job No",
        "typeId": "Job Type",
        "contactId": "Customer Ref",
        "personId": "Contact Person",
        "plannedDuration": "Duration",
        "orderNumber": "PO Number",
        "description": "Notes",
        "Access Code": "Access Code",
        "Priority": "Priority",
        "_raised": "Raised On",
    },
    {
        "reference": "Work Order",
        "typeId": "Type of work",
        "contactId": "Client",
        "personId": "Site Contact",
        "plannedDuration": "Est. Time",
        "orderNumber": "Purchase Order",
        "description": "Description",
        "Access Code": "Access Code",
        "Priority": "Priority",
        "_raised": "Created",
    },
    {
        "reference": "Ticket #",
        "typeId": "Category",
        "contactId": "Account",
        "personId": "Person",
        "plannedDuration": "Planned mins",
        "orderNumber": "Order No.",
        "description": "Details",
        "Access Code": "Access Code",
        "Priority": "Priority",
        "_raised": "Logged",
    },
    {  # words the synonym lists do not hold as such
        "reference": "Job Ref No",
        "typeId": "Kind of Visit",
        "contactId": "Cust. Code",
        "personId": "Contact UUID",
        "plannedDuration": "Visit Length",
        "orderNumber": "P.O. Ref",
        "description": "Remarks",
        "Access Code": "Key Safe",
        "Priority": "Urgency",
        "_raised": "Date Raised",
    },
]

ACCESS_CODE, PRIORITY = 432632, 432634
#: What each declared custom field belongs to in the sample tenant (samples/sandbox_data.json).
CUSTOM_FIELD_TYPES = {ACCESS_CODE: [101, 102, 103], PRIORITY: [102, 104]}


@dataclass
class Export:
    path: Path
    vocabulary: dict[str, str]
    bodies: dict[int, dict[str, Any]]  # spreadsheet row → the body these cells stand for
    mistakes: dict[int, str] = field(default_factory=dict)  # spreadsheet row → kind of mistake made on purpose

    def refused_by_sandbox(self, data: ReferenceData | None = None) -> dict[int, dict[str, list[str]]]:
        """Rows whose body the sandbox's own rules refuse, with its 422 errors."""
        from pipeline.sandbox.rules import Limits, validate_create

        data = data or load_reference_data()
        refused = {}
        for row, body in self.bodies.items():
            errors = validate_create(body, data, Limits())
            if errors:
                refused[row] = errors
        return refused


def _duration(rng: random.Random, minutes: int) -> str:
    form = rng.randrange(4)
    if form == 0:
        return str(minutes)
    if form == 1:
        return f"{minutes // 60}:{minutes % 60:02d}"
    if form == 2:
        return f"{minutes // 60}h{minutes % 60:02d}" if minutes % 60 else f"{minutes // 60}h"
    return f"{minutes} mins"


def write_export(folder: Path, rows: int = 1200, seed: int = 12, vocabulary: int = 0, suffix: str = ".csv") -> Export:
    """A legacy export of `rows` rows with mistakes at fixed rates (see the module docstring)."""
    data = load_reference_data()
    rng = random.Random(seed)
    words = VOCABULARIES[vocabulary]
    types = {t.id: t for t in data.job_types.values()}
    contacts = list(data.contacts.values())
    persons_of: dict[int, list[str]] = {}
    for p in data.persons:
        persons_of.setdefault(p["contactId"], []).append(p["id"])
    headers = [words[k] for k in words]
    out: list[dict[str, str]] = []
    bodies: dict[int, dict[str, Any]] = {}
    mistakes: dict[int, str] = {}
    for i in range(rows):
        row = i + 2
        type_id = rng.choice([101, 101, 101, 103, 103, 102, 104])
        contact = rng.choice(contacts)
        minutes = rng.choice([30, 45, 60, 90, 120, 150])
        person = rng.choice(persons_of[contact["id"]]) if rng.random() < 0.4 else None
        order = f"PO-{40000 + i}" if types[type_id].is_order_number_required or rng.random() < 0.2 else None
        access = f"{rng.randrange(10000):04d}" if type_id in (101, 102, 103) and rng.random() < 0.5 else None
        priority = rng.choice(["High", "Normal", "Low"]) if type_id in (102, 104) and rng.random() < 0.5 else None
        kind = None
        roll = i % 100
        if roll in range(0, 6) or i % 97 == 5:  # an access code on an installation (not on type 104)
            type_id, order, kind = 104, f"PO-{40000 + i}", "custom_field"
            access, priority = f"{rng.randrange(10000):04d}", None
        elif roll == 50 and i < 600:  # no order number where the type requires one
            type_id, order, access, kind = 102, None, None, "order_number"
        elif i in (333, 777):  # an archived job type
            type_id, access, priority, kind = 199, None, None, "archived"
        elif i in (111, 515, 919):  # a person of another contact
            other = next(c for c in contacts if c["id"] != contact["id"])
            person, kind = persons_of[other["id"]][0], "person_contact"
        elif i in (222, 888):  # offline mistakes: a duration that is not one, a missing customer
            kind = "offline"
        cells = {
            "reference": f"J{10000 + i}",
            "typeId": types[type_id].name,
            "contactId": str(contact["reference"]),
            "personId": person or "",
            "plannedDuration": _duration(rng, minutes),
            "orderNumber": order or "",
            "description": f"Visit {i + 1} for {contact['name']}",
            "Access Code": access or "",
            "Priority": priority or "",
            "_raised": f"{1 + i % 28:02d}/05/2024",
        }
        body: dict[str, Any] = {
            "typeId": type_id,
            "contactId": contact["id"],
            "plannedDuration": minutes,
            "reference": cells["reference"],
            "description": cells["description"],
            "customFields": [
                {"definitionId": d, "value": v} for d, v in ((ACCESS_CODE, access), (PRIORITY, priority)) if v
            ],
        }
        if person:
            body["personId"] = person
        if order:
            body["orderNumber"] = order
        if i == 222:
            cells["plannedDuration"] = "about an hour"
        if i == 888:
            cells["contactId"] = ""
        if kind:
            mistakes[row] = kind
        out.append({words[k]: v for k, v in cells.items()})
        bodies[row] = body
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"export{vocabulary}{suffix}"
    if suffix == ".xlsx":
        import xlsxwriter

        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet("Jobs")
        sheet.write_row(0, 0, headers)
        for n, record in enumerate(out, start=1):
            sheet.write_row(n, 0, [record[h] for h in headers])
        book.close()
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=headers)
            writer.writeheader()
            writer.writerows(out)
    return Export(path, words, bodies, mistakes)


def export_mapping(export: Export, declare_custom_fields: bool = True) -> str:
    """The hand-written mapping of an export: tenant look-ups for job types and customers."""
    w = export.vocabulary
    access = f"{{ definition_id = {ACCESS_CODE}, job_types = {CUSTOM_FIELD_TYPES[ACCESS_CODE]} }}"
    priority = f"{{ definition_id = {PRIORITY}, job_types = {CUSTOM_FIELD_TYPES[PRIORITY]} }}"
    if not declare_custom_fields:
        access, priority = str(ACCESS_CODE), str(PRIORITY)
    return f"""
[fields.reference]
column = "{w["reference"]}"
[fields.typeId]
column = "{w["typeId"]}"
lookup = "bigchange:jobTypes"
[fields.contactId]
column = "{w["contactId"]}"
lookup = "bigchange:contacts"
[fields.personId]
column = "{w["personId"]}"
[fields.plannedDuration]
column = "{w["plannedDuration"]}"
parse = "duration"
unit = "minutes"
[fields.orderNumber]
column = "{w["orderNumber"]}"
[fields.description]
column = "{w["description"]}"
[custom_fields]
"{w["Access Code"]}" = {access}
"{w["Priority"]}" = {priority}
"""
