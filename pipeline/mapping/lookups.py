"""Lookup tables of a mapping: translate legacy codes (job type codes, customer codes…) to BigChange ids.

A lookup comes from a CSV file (two columns, by default the first is the key and the second the id; named
columns with `key_column` / `id_column`) or from inline `values = {"CODE" = 101}`. Keys match case- and
space-insensitively ("svc 01" finds "SVC01"); leading zeros are significant ("007" is not "7").

Look-ups against the tenant (`lookup = "bigchange:contacts"` by reference or name, `"bigchange:jobTypes"` by
name, `"bigchange:persons"` by email or name within the row's contact) are built from its reference data
(pipeline/tenant/refdata.py) when a run has it: a key that two records share is never a hit (the message lists them
with their ids), a key not found gets the closest existing values.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MappingError


def normalise_key(text: pl.Expr) -> pl.Expr:
    """The comparison form of a lookup key: lower case, without any whitespace."""
    return text.str.to_lowercase().str.replace_all(r"\s+", "")


def _normalise_one(key: str) -> str:
    return "".join(key.lower().split())


@dataclass(frozen=True)
class Lookup:
    """One named lookup: normalised key → id (as text; the field's parser turns it into its type)."""

    name: str
    file: Path | None  # None for inline values
    table: dict[str, str]
    # look-ups against the tenant only:
    what: str | None = None  # "the tenant's contacts by name"
    ambiguous: dict[str, str] = field(default_factory=dict)  # normalised key → its candidates, for the message
    shown: dict[str, str] = field(default_factory=dict)  # normalised key → the key as the tenant writes it
    grams: dict[str, list[str]] = field(default_factory=dict)  # trigram → keys, built at the first miss if large

    @property
    def tenant(self) -> bool:
        return self.what is not None

    def where(self) -> str:
        """How a message names this lookup: "lookup 'job_types' (lookups/job_types.csv)"."""
        if self.what:
            return self.what
        return f"lookup '{self.name}' ({self.file})" if self.file else f"lookup '{self.name}' (inline values)"

    def miss(self, cell: str) -> tuple[str, str]:
        """(check, message) for a cell a tenant look-up did not translate: ambiguous, or not found."""
        key = _normalise_one(cell)
        if key in self.ambiguous:
            return "ambiguous", (
                f"'{cell}' matches more than one of {self.what}: {self.ambiguous[key]}; "
                "nothing is guessed: use a value that names one of them, or correct the cell"
            )
        if len(self.shown) > INDEX_ABOVE and not self.grams:
            self.grams.update(trigram_index(self.shown))
        return "lookup", f"'{cell}' is not one of {self.what}{closest(key, self.shown, self.grams)}; correct the cell"

    def translate(self, text: pl.Expr) -> pl.Expr:
        """The id (text) of each key of `text`; null when blank or not in the table."""
        keys = list(self.table)
        ids = list(self.table.values())
        return normalise_key(text).replace_strict(keys, ids, default=None, return_dtype=pl.String)


def _add(table: dict[str, str], raw_key: str, raw_id: str, where: str, mapping_file: Path, name: str) -> None:
    key = _normalise_one(raw_key)
    value = raw_id.strip()
    if not key:
        raise MappingError(f"{mapping_file}: [lookups.{name}] {where} has a blank key; fill it in or remove the line")
    if not value:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] {where}: key '{raw_key}' has no id; fill it in or remove the line"
        )
    if key in table and table[key] != value:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] {where}: key '{raw_key}' is listed twice with different ids "
            f"({table[key]} and {value}); keep one"
        )
    table[key] = value


def _read_csv(path: Path, spec: dict[str, Any], mapping_file: Path, name: str) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] file '{path}' does not exist; paths are relative to the mapping file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(
            f"{mapping_file}: [lookups.{name}] cannot read '{path}' as UTF-8 CSV ({exc}); save it as UTF-8 CSV"
        ) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise MappingError(f"{mapping_file}: [lookups.{name}] '{path}' is empty; it needs a header line key,id")
    header = [h.strip() for h in rows[0]]
    key_col = spec.get("key_column", header[0] if header else "")
    id_col = spec.get("id_column", header[1] if len(header) > 1 else "")
    for label, col in (("key_column", key_col), ("id_column", id_col)):
        if col not in header or not col:
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] {label} '{col}' is not a column of '{path}' "
                f"(columns: {', '.join(header) or 'none'}); fix the column name"
            )
    ki, ii = header.index(key_col), header.index(id_col)
    table: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(ki, ii):
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] '{path}' line {line_no} has {len(row)} field(s); "
                f"it needs '{key_col}' and '{id_col}'"
            )
        _add(table, row[ki], row[ii], f"'{path}' line {line_no}", mapping_file, name)
    return table


def load_lookup(name: str, spec: Any, mapping_file: Path) -> Lookup:
    """Load `[lookups.<name>]` of `mapping_file`; MappingError names the file, the key and what to do."""
    if not isinstance(spec, dict):
        raise MappingError(f'{mapping_file}: [lookups.{name}] must be a table with `file = "…"` or `values = {{…}}`')
    allowed = {"file", "values", "key_column", "id_column"}
    for key in spec:
        if key not in allowed:
            raise MappingError(
                f"{mapping_file}: [lookups.{name}] unknown key '{key}'; allowed keys: {', '.join(sorted(allowed))}"
            )
    has_file, has_values = "file" in spec, "values" in spec
    if has_file == has_values:
        raise MappingError(f'{mapping_file}: [lookups.{name}] needs exactly one of `file = "…"` or `values = {{…}}`')
    if has_values:
        values = spec["values"]
        if not isinstance(values, dict):
            raise MappingError(f'{mapping_file}: [lookups.{name}] values must be a table like {{"SVC" = 101}}')
        table: dict[str, str] = {}
        for k, v in values.items():
            _add(table, str(k), str(v), "values", mapping_file, name)
        return Lookup(name, None, table)
    path = Path(os.path.normpath(mapping_file.parent / str(spec["file"])))
    return Lookup(name, path, _read_csv(path, spec, mapping_file, name))


# --- look-ups against the tenant ------------------------------------------------------------------------------

TENANT_PREFIX = "bigchange:"
#: tenant look-up → (the API field it feeds, the `by` values it accepts; the first is the default)
TENANT_LOOKUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bigchange:contacts": ("contactId", ("reference", "name")),
    "bigchange:jobTypes": ("typeId", ("name",)),
    "bigchange:persons": ("personId", ("email", "name")),
}
_NOUNS = {"bigchange:contacts": "contacts", "bigchange:jobTypes": "job types", "bigchange:persons": "persons"}


#: Above this many keys, `closest` compares a miss with the keys sharing most trigrams with it only.
INDEX_ABOVE = 1000
_CANDIDATES = 200


def _trigrams(key: str) -> set[str]:
    padded = f"  {key} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def trigram_index(keys: Iterable[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for key in keys:
        for gram in _trigrams(key):
            index.setdefault(gram, []).append(key)
    return index


def closest(key: str, shown: dict[str, str], grams: dict[str, list[str]] | None = None, n: int = 3) -> str:
    """The existing keys nearest to normalised `key` (difflib) as "; closest: 'A', 'B'", or "; nothing close".
    With a trigram index, difflib only sees the keys sharing most trigrams with `key` (25,000 contacts: 0.3 s
    per miss otherwise)."""
    candidates: list[str] = list(shown)
    if grams:
        counts: dict[str, int] = {}
        for gram in _trigrams(key):
            for other in grams.get(gram, ()):
                counts[other] = counts.get(other, 0) + 1
        candidates = sorted(counts, key=lambda k: -counts[k])[:_CANDIDATES]
    found = difflib.get_close_matches(key, candidates, n=n, cutoff=0.6)
    return ("; closest: " + ", ".join(f"'{shown[k]}'" for k in found)) if found else "; nothing close"


def _candidates(items: list[tuple[str, str, str]]) -> str:
    """'Acme (id 5003, C00003), ACME (id 5017, C00017)' from (shown key, id, detail)."""
    return ", ".join(f"'{key}' (id {id_}{', ' + detail if detail else ''})" for key, id_, detail in items[:5]) + (
        f" and {len(items) - 5} more" if len(items) > 5 else ""
    )


def person_key(person: dict[str, Any], by: str) -> str | None:
    """A person's key for a look-up by email or by name ("forename surname")."""
    if by == "email":
        return person.get("email") or None
    name = " ".join(str(p) for p in (person.get("forename"), person.get("surname")) if p)
    return name or None


def tenant_lookup(name: str, by: str, records: Iterable[dict[str, Any]]) -> Lookup:
    """A look-up of job types or contacts of the tenant: normalised key → id; shared keys are ambiguous.

    Job types: when records share a name and only one of them is not archived, that one is the hit (an archived
    type cannot be used anyway)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    shown: dict[str, str] = {}
    for record in records:
        raw = record.get(by)
        key = _normalise_one(str(raw)) if raw is not None else ""
        if key and record.get("id") is not None:
            groups.setdefault(key, []).append(record)
            shown.setdefault(key, str(raw))
    table: dict[str, str] = {}
    ambiguous: dict[str, str] = {}
    for key, found in groups.items():
        if len(found) > 1 and name == "bigchange:jobTypes":
            active = [r for r in found if not r.get("isArchived")]
            found = active if len(active) == 1 else found
        if len({str(r["id"]) for r in found}) == 1:
            table[key] = str(found[0]["id"])
        else:
            other = "reference" if by == "name" else "name"
            detail = [
                (
                    str(r.get(by)),
                    str(r["id"]),
                    ("archived" if r.get("isArchived") else "")
                    if name == "bigchange:jobTypes"
                    else f"{other} '{r.get(other)}'",
                )
                for r in found
            ]
            ambiguous[key] = _candidates(detail)
    what = f"the tenant's {_NOUNS[name]} by {by}"
    return Lookup(name, None, table, what=what, ambiguous=ambiguous, shown=shown)


def resolve_persons(
    pairs: list[tuple[int, str]], by: str, persons: Iterable[dict[str, Any]]
) -> tuple[dict[tuple[int, str], str], dict[tuple[int, str], tuple[str, str]]]:
    """Persons looked up by email or name *within* their contact: (contact id, cell) pairs → person id, and the
    pairs that failed → (check, message)."""
    of_contact: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for person in persons:
        key = person_key(person, by)
        if key and person.get("contactId") is not None and person.get("id"):
            of_contact.setdefault(int(person["contactId"]), {}).setdefault(_normalise_one(key), []).append(person)
    found: dict[tuple[int, str], str] = {}
    failed: dict[tuple[int, str], tuple[str, str]] = {}
    what = "email" if by == "email" else "name"
    for contact, cell in pairs:
        keys = of_contact.get(contact, {})
        hits = keys.get(_normalise_one(cell), [])
        if len(hits) == 1:
            found[contact, cell] = str(hits[0]["id"])
        elif hits:
            listed = _candidates([(person_key(p, by) or "", str(p["id"]), "") for p in hits])
            failed[contact, cell] = (
                "ambiguous",
                f"'{cell}' matches {len(hits)} persons of contact {contact}: {listed}; nothing is guessed: "
                "put the person id (uuid) in the cell or correct it",
            )
        else:
            shown = {k: person_key(v[0], by) or k for k, v in keys.items()}
            hint = closest(_normalise_one(cell), shown) if shown else "; that contact has no persons"
            failed[contact, cell] = ("lookup", f"'{cell}' is not the {what} of a person of contact {contact}{hint}")
    return found, failed
