"""Reference data of the sandbox tenant (job types with their custom field definitions, contacts, persons),
loaded once from JSON and indexed for the validation rules and the list endpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError

#: the sandbox tenant's reference data, shipped inside the package (samples/sandbox_data.json is a copy for users).
DEFAULT_DATA = files("pipeline.sandbox").joinpath("sandbox_data.json")

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: Fields of the public representations (openapi.yaml); anything else in the data file stays private.
JOB_TYPE_FIELDS = ("id", "name", "description", "plannedDuration", "categoryId", "isArchived", "isOrderNumberRequired")
CONTACT_FIELDS = ("id", "reference", "name")
PERSON_FIELDS = ("id", "contactId", "forename", "surname", "email")


@dataclass(frozen=True)
class Definition:
    id: int
    label: str
    mandatory: bool


@dataclass(frozen=True)
class JobType:
    id: int
    name: str
    is_archived: bool
    is_order_number_required: bool
    definitions: dict[int, Definition]
    public: dict[str, Any]  # the JobType body of GET /v1/jobTypes


@dataclass(frozen=True)
class ReferenceData:
    path: Path
    job_types: dict[int, JobType]
    contacts: dict[int, dict[str, Any]]  # public Contact bodies by id
    persons: list[dict[str, Any]]  # public Person bodies in file order
    person_contact: dict[str, int]  # lower-case person uuid → its contact id


def _fail(path: Path, where: str, what: str) -> SettingsError:
    return SettingsError(f"sandbox data file {path}, {where}: {what}; fix the file or omit --data")


def _int(item: dict[str, Any], key: str, path: Path, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, where, f"'{key}' must be a whole number, got {value!r}")
    return value


def _list(doc: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    items = doc.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _fail(path, f"'{key}'", "expected a list of objects")
    return items


def load_reference_data(path: Path | None = None) -> ReferenceData:
    """Load and index a reference data file (default: the package's). Raises SettingsError (one line) when it is
    unusable."""
    if path is None:
        with as_file(DEFAULT_DATA) as default:
            return load_reference_data(default)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise SettingsError(
            f"cannot read sandbox data file {path}: {exc.strerror or exc}; check the --data path"
        ) from None
    except ValueError as exc:
        raise _fail(path, "JSON", str(exc)) from None
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected an object with jobTypes, contacts and persons")

    job_types: dict[int, JobType] = {}
    for n, item in enumerate(_list(doc, "jobTypes", path)):
        where = f"jobTypes[{n}]"
        type_id = _int(item, "id", path, where)
        definitions: dict[int, Definition] = {}
        for m, d in enumerate(item.get("customFieldDefinitions") or []):
            if not isinstance(d, dict):
                raise _fail(path, f"{where}.customFieldDefinitions[{m}]", "expected an object")
            def_id = _int(d, "id", path, f"{where}.customFieldDefinitions[{m}]")
            definitions[def_id] = Definition(def_id, str(d.get("label") or def_id), bool(d.get("mandatory")))
        if type_id in job_types:
            raise _fail(path, where, f"job type id {type_id} appears twice")
        public = {key: item.get(key) for key in JOB_TYPE_FIELDS}
        archived = public["isArchived"] = bool(item.get("isArchived"))
        order_required = public["isOrderNumberRequired"] = bool(item.get("isOrderNumberRequired"))
        job_types[type_id] = JobType(
            id=type_id,
            name=str(item.get("name") or type_id),
            is_archived=archived,
            is_order_number_required=order_required,
            definitions=definitions,
            public=public,
        )

    contacts: dict[int, dict[str, Any]] = {}
    for n, item in enumerate(_list(doc, "contacts", path)):
        contact_id = _int(item, "id", path, f"contacts[{n}]")
        if contact_id in contacts:
            raise _fail(path, f"contacts[{n}]", f"contact id {contact_id} appears twice")
        contacts[contact_id] = {key: item.get(key) for key in CONTACT_FIELDS}

    persons: list[dict[str, Any]] = []
    person_contact: dict[str, int] = {}
    for n, item in enumerate(_list(doc, "persons", path)):
        where = f"persons[{n}]"
        person_id = item.get("id")
        if not isinstance(person_id, str) or not UUID_RE.match(person_id):
            raise _fail(path, where, f"'id' must be a uuid, got {person_id!r}")
        contact_id = _int(item, "contactId", path, where)
        if contact_id not in contacts:
            raise _fail(path, where, f"contactId {contact_id} is not a contact of the file")
        person_contact[person_id.lower()] = contact_id
        persons.append({key: item.get(key) for key in PERSON_FIELDS})

    return ReferenceData(
        path=path, job_types=job_types, contacts=contacts, persons=persons, person_contact=person_contact
    )


# --- generated tenants (benchmarks, tests): `python -m pipeline.sandbox.data --contacts N --persons M -o FILE` ---

_FIRST = ("Alice", "Ben", "Chloe", "Dev", "Ella", "Femi", "Grace", "Harry", "Isla", "Jack", "Kemi", "Liam", "Mia")
_LAST = ("Smith", "Brown", "Evans", "Patel", "Jones", "Wilson", "Walker", "Taylor", "Khan", "Murphy", "Nowak")
_WORDS = ("Acme", "Bright", "Cedar", "Delta", "Elm", "Fern", "Granite", "Harbour", "Ivy", "Juniper", "Kestrel")
_KINDS = ("Housing", "Lettings", "Estates", "Property", "Facilities", "Homes", "Management", "Trust")


def generate_reference_data(contacts: int, persons: int, seed: int = 0) -> dict[str, Any]:
    """The sample tenant (samples/sandbox_data.json) plus `contacts` generated contacts (ids from 100001,
    references G000001…, names that sometimes repeat, as real customer lists do) and `persons` generated persons
    spread over them (emails unique within a contact). Deterministic for a seed."""
    import random
    import uuid

    doc = json.loads(DEFAULT_DATA.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    namespace = uuid.UUID(int=seed)
    new_contacts = [
        {
            "id": 100_001 + n,
            "reference": f"G{n + 1:06d}",
            "name": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_KINDS)}",
        }
        for n in range(contacts)
    ]
    new_persons = []
    for n in range(persons if contacts else 0):
        contact = new_contacts[n % contacts]
        forename, surname = rng.choice(_FIRST), rng.choice(_LAST)
        new_persons.append(
            {
                "id": str(uuid.uuid5(namespace, f"person-{n}")),
                "contactId": contact["id"],
                "forename": forename,
                "surname": surname,
                "email": f"{forename}.{surname}.{n}@example.com".lower(),
            }
        )
    doc["_comment"] = f"Generated: the sample tenant plus {contacts} contacts and {persons} persons (seed {seed})."
    doc["contacts"] = doc["contacts"] + new_contacts
    doc["persons"] = doc["persons"] + new_persons
    return doc


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sandbox.data", description=generate_reference_data.__doc__
    )
    parser.add_argument("--contacts", type=int, default=25_000)
    parser.add_argument("--persons", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, required=True, help="the JSON file to write (for --data)")
    args = parser.parse_args(argv)
    doc = generate_reference_data(args.contacts, args.persons, args.seed)
    args.output.write_text(json.dumps(doc), encoding="utf-8")
    print(f"wrote {args.output}: {len(doc['contacts'])} contacts, {len(doc['persons'])} persons")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
