"""Generate the bundled sample inputs (deterministic; run `python samples/make_samples.py` and commit the outputs).

- `samples/legacy_jobs.csv`: a legacy system's export, cp1252, `;` delimiter, € and accented names, leading-zero
  customer codes; 60 rows: 48 good, 8 our validation refuses, 4 the sandbox rejects (422).
- `samples/jobs.xlsx`: an analyst's workbook, "Readme" sheet first and a "Jobs" sheet; ids stored as numbers, a
  date column, an order number with leading zeros stored as text, one `#N/A` cell; 40 rows: 31 good, 5 invalid,
  4 rejected.
- `samples/lookups/job_types.csv`, `samples/lookups/customers.csv`: legacy codes → sandbox ids.
- `samples/sandbox_data.json`: a copy of the sandbox tenant's reference data, for users to read and adapt
  (`jobimport sandbox --data FILE`); the sandbox itself reads `pipeline/sandbox/sandbox_data.json`, the one to edit.
- `pipeline/demo_data/`: what `jobimport demo` imports, shipped inside the package (an installed wheel has no
  `samples/` folder): copies of `samples/jobs.xlsx` and of `mappings/jobs_xlsx.toml`.

Ids come from `pipeline/sandbox/sandbox_data.json` (the sandbox tenant). What each deliberate mistake is, and which
outcome it must get, is listed in EXPECTED below (tests/test_samples.py checks it).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import xlsxwriter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SANDBOX_DATA = ROOT / "pipeline" / "sandbox" / "sandbox_data.json"
DEMO_DATA = ROOT / "pipeline" / "demo_data"
DEMO_MAPPING = ROOT / "mappings" / "jobs_xlsx.toml"
DATA = json.loads(SANDBOX_DATA.read_text(encoding="utf-8"))

JOB_TYPE_CODES = {"BSV": 101, "ERP": 102, "AIN": 103, "INS": 104, "SUR": 199}
CUSTOMER_CODES = {f"00{100 + i}": c["id"] for i, c in enumerate(DATA["contacts"], start=1)}  # "00101" → 5001
CONTACT_OF_CODE = {v: k for k, v in CUSTOMER_CODES.items()}
PERSONS: dict[int, list[str]] = {}
for _p in DATA["persons"]:
    PERSONS.setdefault(_p["contactId"], []).append(_p["id"])
CF_OF_TYPE = {t["id"]: {d["id"] for d in t["customFieldDefinitions"]} for t in DATA["jobTypes"]}
ORDER_REQUIRED = {t["id"] for t in DATA["jobTypes"] if t["isOrderNumberRequired"]}
ACCESS, GATE, PRIORITY, CERTIFICATE = 432632, 432633, 432634, 432635

NOTES = [
    "Annual service — customer asked for a morning visit",
    "Chaudière Vaillant, accès par la cour arrière",
    "Callout fee €85 agreed with Mrs Núñez",
    "Tenant: Zoë Brontë, flat 3; ring twice",
    "Check radiator valves in the café kitchen",
    "Leak under sink reported by Mr O'Brien",
    'Replace "smart" thermostat; keep the old one',
    "Key safe at side gate; code from office",
    "Gas safety record due; bring CP12 forms",
    "Boiler pressure dropping (1.2 to 0.5 bar) – recheck",
]
DURATIONS_CSV = ["90", "1:30", "1h30", "2 hours", "45 min", "1.5h", "60", "1h 15m", "30 minutes", "2h"]
TYPE_CYCLE = [101, 103, 102, 101, 104, 103, 101, 102]

# Which rows (spreadsheet row numbers, header = row 1) must end how. Keys: file name → {row: (outcome, why)}.
EXPECTED: dict[str, dict[int, tuple[str, str]]] = {}


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _good_row(i: int, rng: random.Random) -> dict[str, Any]:
    """A row the sandbox accepts: type, contact, a person of that contact, order number and custom fields that fit."""
    type_id = TYPE_CYCLE[i % len(TYPE_CYCLE)]
    contact = DATA["contacts"][i % len(DATA["contacts"])]["id"]
    person = rng.choice(PERSONS[contact]) if rng.random() < 0.6 else None
    allowed = CF_OF_TYPE[type_id]
    return {
        "type_id": type_id,
        "contact": contact,
        "person": person,
        "order": f"PO-{40000 + i * 7}" if type_id in ORDER_REQUIRED or rng.random() < 0.3 else None,
        "notes": NOTES[i % len(NOTES)],
        "access": f"{rng.randint(1000, 9999)}#" if ACCESS in allowed and rng.random() < 0.7 else None,
        "gate": f"G{rng.randint(10, 99)}" if GATE in allowed and rng.random() < 0.5 else None,
        "priority": rng.choice(["High", "Normal", "Low"]) if PRIORITY in allowed else None,
        "certificate": f"CERT-{rng.randint(100000, 999999)}" if CERTIFICATE in allowed and rng.random() < 0.8 else None,
    }


# --- legacy CSV -------------------------------------------------------------------------------------------------

CSV_HEADERS = [
    "Job No",
    "Job Type",
    "Customer Code",
    "Duration",
    "Contact Person",
    "Notes",
    "PO Number",
    "Access Code",
    "Gate Code",
    "Legacy Ref",
    "Raised On",
]


def make_legacy_csv(path: Path) -> None:
    rng = _rng(20240601)
    rows: list[dict[str, Any]] = []
    for i in range(60):
        g = _good_row(i, rng)
        rows.append(
            {
                "Job No": f"J{10001 + i}",
                "Job Type": next(k for k, v in JOB_TYPE_CODES.items() if v == g["type_id"]),
                "Customer Code": CONTACT_OF_CODE[g["contact"]],
                "Duration": DURATIONS_CSV[i % len(DURATIONS_CSV)],
                "Contact Person": g["person"] or "",
                "Notes": g["notes"],
                "PO Number": g["order"] or "",
                "Access Code": g["access"] or "",
                "Gate Code": g["gate"] or "",
                # about one row in four has no legacy reference: the mapping's template makes one (LEG-<Job No>)
                "Legacy Ref": "" if i % 4 == 3 else f"WO-2024-{i + 1:04d}",
                "Raised On": (dt.date(2024, 5, 1) + dt.timedelta(days=i)).strftime("%d/%m/%Y"),
                "_g": g,
            }
        )
    expected: dict[int, tuple[str, str]] = {}

    def row(n: int) -> dict[str, Any]:  # spreadsheet row n (header is row 1)
        return rows[n - 2]

    # cosmetic but valid: codes in another case / with spaces, a thousands separator-free duration with unit
    row(4)["Job Type"] = " bsv "
    row(6)["Customer Code"] = row(6)["Customer Code"] + " "
    row(8)["Contact Person"] = "{" + (row(8)["_g"]["person"] or PERSONS[row(8)["_g"]["contact"]][0]).upper() + "}"
    # --- refused by our own validation (invalid) ---
    row(10)["Job Type"] = "XYZ"
    expected[10] = ("invalid", "unknown job type code")
    row(14)["Customer Code"] = "00999"
    expected[14] = ("invalid", "unknown customer code")
    row(18)["Duration"] = "12.5"
    expected[18] = ("invalid", "duration without unit")
    row(22)["Contact Person"] = "3e893453-fc5d-5d21-9f4a"
    expected[22] = ("invalid", "truncated person uuid")
    row(26)["Notes"] = "Full survey history follows. " + "Previous visit notes: radiator bled, pressure ok. " * 12
    expected[26] = ("invalid", "description over 500 characters")
    row(31)["Legacy Ref"] = "WO-2024-0029"  # same as row 30
    row(30)["Legacy Ref"] = "WO-2024-0029"
    expected[30] = ("invalid", "duplicate reference (with row 31)")
    expected[31] = ("invalid", "duplicate reference (with row 30)")
    row(35)["Customer Code"] = ""
    expected[35] = ("invalid", "blank customer code")
    # --- accepted by us, rejected by the sandbox (422) ---
    row(40).update({"Job Type": "SUR", "Access Code": "", "Gate Code": ""})
    expected[40] = ("rejected", "archived job type 199")
    row(44).update({"Job Type": "ERP", "PO Number": "", "Gate Code": "", "Access Code": "7781#"})
    expected[44] = ("rejected", "type 102 needs an order number")
    other = PERSONS[5020][0] if row(48)["_g"]["contact"] != 5020 else PERSONS[5019][0]
    row(48)["Contact Person"] = other
    expected[48] = ("rejected", "person of another contact")
    row(52).update({"Job Type": "ERP", "PO Number": "PO-77001", "Gate Code": "G42"})
    expected[52] = ("rejected", "Gate Code is not a custom field of type 102")
    EXPECTED["legacy_jobs.csv"] = expected

    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADERS)
    for r in rows:
        writer.writerow([r[h] for h in CSV_HEADERS])
    path.write_bytes(buf.getvalue().encode("cp1252"))


# --- workbook ---------------------------------------------------------------------------------------------------

XLSX_HEADERS = [
    "Job Ref",
    "Job Type ID",
    "Customer ID",
    "Planned Minutes",
    "Person ID",
    "Description",
    "Order No",
    "Scheduled Date",
    "Access Code",
    "Priority",
    "Certificate No",
]


def make_jobs_xlsx(path: Path) -> None:
    rng = _rng(20240715)
    rows: list[dict[str, Any]] = []
    for i in range(40):
        g = _good_row(i + 3, rng)
        rows.append(
            {
                "Job Ref": f"BC-{7001 + i}",
                "Job Type ID": g["type_id"],
                "Customer ID": g["contact"],
                "Planned Minutes": [60, 90, 120, 45, 30][i % 5],
                "Person ID": g["person"],
                "Description": g["notes"],
                "Order No": g["order"],
                "Scheduled Date": dt.date(2024, 9, 2) + dt.timedelta(days=i // 3),
                "Access Code": g["access"],
                "Priority": g["priority"],
                "Certificate No": g["certificate"],
                "_g": g,
            }
        )
    expected: dict[int, tuple[str, str]] = {}

    def row(n: int) -> dict[str, Any]:
        return rows[n - 2]

    row(5)["Order No"] = "000123"  # leading zeros kept: stored as text
    # --- invalid ---
    row(9)["Customer ID"] = "#N/A"
    expected[9] = ("invalid", "#N/A error cell in Customer ID")
    row(13)["Planned Minutes"] = 12.5
    expected[13] = ("invalid", "12.5 minutes")
    row(17)["Job Type ID"] = None
    expected[17] = ("invalid", "blank job type")
    row(21)["Person ID"] = "not-a-uuid"
    expected[21] = ("invalid", "bad person id")
    row(25)["Job Ref"] = row(24)["Job Ref"]
    expected[24] = ("invalid", "duplicate reference (with row 25)")
    expected[25] = ("invalid", "duplicate reference (with row 24)")
    # --- rejected by the sandbox ---
    row(29).update({"Job Type ID": 199, "Access Code": None, "Priority": None, "Certificate No": None})
    expected[29] = ("rejected", "archived job type 199")
    row(33).update({"Job Type ID": 104, "Order No": None, "Access Code": None, "Certificate No": None})
    row(33)["Priority"] = "High"
    expected[33] = ("rejected", "type 104 needs an order number")
    row(37).update({"Job Type ID": 101, "Certificate No": "CERT-555001", "Priority": None})
    expected[37] = ("rejected", "Certificate No is not a custom field of type 101")
    contact = row(39)["Customer ID"]
    row(39)["Person ID"] = PERSONS[5001][0] if contact != 5001 else PERSONS[5002][0]
    expected[39] = ("rejected", "person of another contact")
    EXPECTED["jobs.xlsx"] = expected

    wb = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False}
    )
    wb.set_properties({"created": dt.datetime(2024, 9, 1, 9, 0, 0)})  # deterministic output
    bold = wb.add_format({"bold": True})
    date_fmt = wb.add_format({"num_format": "dd/mm/yyyy"})
    readme = wb.add_worksheet("Readme")
    for n, line in enumerate(
        [
            "Jobs to import into BigChange",
            "One row per job on the 'Jobs' sheet. Job Type ID and Customer ID are BigChange ids.",
            "Planned Minutes: whole minutes. Order No is required for Emergency Repair (102) and Installation (104).",
        ]
    ):
        readme.write_string(n, 0, line, bold if n == 0 else None)
    ws = wb.add_worksheet("Jobs")
    for c, h in enumerate(XLSX_HEADERS):
        ws.write_string(0, c, h, bold)
    for r, data in enumerate(rows, start=1):
        for c, h in enumerate(XLSX_HEADERS):
            v = data[h]
            if v is None:
                continue
            if v == "#N/A":
                ws.write_formula(r, c, "=NA()", None, "#N/A")
            elif isinstance(v, dt.date):
                ws.write_datetime(r, c, dt.datetime(v.year, v.month, v.day), date_fmt)
            elif isinstance(v, int | float):
                ws.write_number(r, c, v)
            else:
                ws.write_string(r, c, v)
    ws.set_column(0, len(XLSX_HEADERS) - 1, 16)
    wb.close()


# --- lookups ----------------------------------------------------------------------------------------------------


def make_lookups(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = {t["id"]: t["name"] for t in DATA["jobTypes"]}
    with (folder / "job_types.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["code", "id", "name"])
        for code, type_id in JOB_TYPE_CODES.items():
            w.writerow([code, type_id, names[type_id]])
    contacts = {c["id"]: c["name"] for c in DATA["contacts"]}
    with (folder / "customers.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["customer_code", "customer_name", "contact_id"])
        for code, contact_id in CUSTOMER_CODES.items():
            w.writerow([code, contacts[contact_id], contact_id])


def main(out: Path = HERE, demo_out: Path | None = None) -> None:
    """Write every sample file into `out` (default: this folder), and the demo's copies into `demo_out` (default:
    `out`/demo_data, or pipeline/demo_data when `out` is this folder)."""
    demo_out = demo_out or (DEMO_DATA if out == HERE else out / "demo_data")
    make_lookups(out / "lookups")
    make_legacy_csv(out / "legacy_jobs.csv")
    make_jobs_xlsx(out / "jobs.xlsx")
    (out / "expected_outcomes.json").write_text(
        json.dumps({f: {str(r): list(v) for r, v in rows.items()} for f, rows in EXPECTED.items()}, indent=2) + "\n",
        encoding="utf-8",
    )
    shutil.copyfile(SANDBOX_DATA, out / "sandbox_data.json")
    demo_out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "jobs.xlsx", demo_out / "jobs.xlsx")
    shutil.copyfile(DEMO_MAPPING, demo_out / "jobs_xlsx.toml")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
