"""`jobimport init-mapping FILE [--online] [-o mapping.toml]`: a drafted mapping from a job file's headers and cells.

Each API field gets the column whose header is nearest to one of its synonyms ("Type of work", "Category" for the
job type; "Client", "Account" for the customer…; exact, all words, or difflib similarity) and whose cells look
right for it: uuids for the person, durations for the planned duration, unique short codes for the reference,
long free text for the description, job type names or contact references/names of the tenant (with --online, from
its reference data) for a `bigchange:` look-up. Every guess is written with its evidence as a comment; columns
left over are listed as comments and offered as a commented custom-field template. The draft always loads
(required fields that were not found get an explicit placeholder that validation reports on every row).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import polars as pl

from pipeline.errors import UsageError
from pipeline.mapping.parsers import parse_value
from pipeline.mapping.units import header_unit
from pipeline.model import API_FIELDS, REQUIRED_FIELDS, RawTable

SAMPLE_ROWS = 5000
THRESHOLD = 0.6

SYNONYMS: dict[str, tuple[str, ...]] = {
    "reference": (
        "reference",
        "ref",
        "job ref",
        "job reference",
        "job no",
        "job number",
        "job id",
        "work order",
        "wo",
        "wo number",
        "ticket",
        "ticket no",
        "ticket number",
        "legacy ref",
        "call ref",
        "order ref",
        "job code",
    ),
    "typeId": (
        "job type",
        "type",
        "type of work",
        "work type",
        "category",
        "job category",
        "service",
        "service type",
        "job type id",
        "visit type",
        "task type",
    ),
    "contactId": (
        "customer",
        "client",
        "account",
        "customer code",
        "customer ref",
        "customer id",
        "customer reference",
        "client code",
        "account code",
        "account ref",
        "contact",
        "site",
        "customer name",
        "client name",
    ),
    "plannedDuration": (
        "duration",
        "minutes",
        "planned minutes",
        "planned duration",
        "est time",
        "estimated time",
        "planned mins",
        "mins",
        "time allowed",
        "length",
        "hours",
        "expected duration",
    ),
    "description": ("description", "notes", "details", "comments", "summary", "job description", "instructions"),
    "personId": (
        "contact person",
        "person",
        "site contact",
        "person id",
        "contact name",
        "caller",
        "tenant contact",
        "contact email",
        "person email",
    ),
    "orderNumber": (
        "po",
        "po number",
        "po no",
        "order no",
        "order number",
        "purchase order",
        "purchase order number",
        "po ref",
        "customer order",
    ),
}
_WORD = re.compile(r"[a-z0-9]+")


def words(header: str) -> list[str]:
    return _WORD.findall(header.lower())


def header_score(header: str, field_name: str) -> tuple[float, str]:
    """How much `header` names `field_name` (0..1), and the synonym that matched."""
    mine = " ".join(words(header))
    best, hit = 0.0, ""
    for synonym in SYNONYMS[field_name]:
        if mine == synonym:  # exact: cell contents alone do not outweigh it
            return 1.3, synonym
        score = SequenceMatcher(None, mine, synonym).ratio()
        if synonym in mine.split() or (" " in synonym and set(synonym.split()) <= set(mine.split())):
            score = max(score, 0.85)
        if score > best:
            best, hit = score, synonym
    return best, hit


@dataclass
class Profile:
    """What the non-blank cells of one column look like (shares over the sampled rows)."""

    column: str
    filled: int
    uuid: float = 0.0
    duration: float = 0.0
    integer: float = 0.0
    email: float = 0.0
    distinct: float = 0.0  # distinct / filled
    spaces: float = 0.0  # share with a space inside
    avg_len: float = 0.0
    max_len: int = 0
    date: float = 0.0
    leading_zero: bool = False  # most whole numbers written with leading zeros: codes, not ids
    odd: list[str] = field(default_factory=list)  # in a column of mostly whole numbers, the cells that are not
    plain: list[float] = field(default_factory=list)  # the distinct plain numbers (no unit) among the cells
    tenant: dict[str, float] = field(default_factory=dict)  # "jobTypes:name", "contacts:reference"… → share

    def examples(self, values: list[str]) -> str:
        return ", ".join(values[:3])


_DATE = r"^\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}"


def _mean(flags: pl.Series) -> float:
    value = flags.mean()
    return float(value) if isinstance(value, int | float) else 0.0


def profile(frame: pl.DataFrame, column: str, tenant_keys: dict[str, set[str]]) -> tuple[Profile, list[str]]:
    cells = frame.get_column(column).cast(pl.String).str.strip_chars().replace("", None).drop_nulls()
    n = cells.len()
    if n == 0:
        return Profile(column, 0), []
    col = pl.col(column)
    shares = pl.DataFrame({column: cells}).select(
        parse_value("uuid", col).is_not_null().mean().alias("uuid"),
        parse_value("duration", col, "hours").is_not_null().mean().alias("duration"),
        parse_value("integer", col).is_not_null().mean().alias("integer"),
        col.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$").mean().alias("email"),
        col.str.contains(r"\s").mean().alias("spaces"),
        col.str.len_chars().mean().alias("avg_len"),
        col.str.len_chars().max().alias("max_len"),
        col.str.contains(_DATE).mean().alias("date"),
        (col.str.contains(r"^0\d").mean() >= 0.5).alias("leading_zero"),
    )
    row = shares.row(0, named=True)
    normalised = cells.str.to_lowercase().str.replace_all(r"\s+", "")
    tenant = {key: _mean(normalised.is_in(list(keys))) for key, keys in tenant_keys.items() if keys}
    p = Profile(
        column,
        n,
        uuid=row["uuid"] or 0.0,
        duration=row["duration"] or 0.0,
        integer=row["integer"] or 0.0,
        email=row["email"] or 0.0,
        distinct=cells.n_unique() / n,
        spaces=row["spaces"] or 0.0,
        avg_len=row["avg_len"] or 0.0,
        max_len=int(row["max_len"] or 0),
        date=row["date"] or 0.0,
        leading_zero=bool(row["leading_zero"]),
        tenant=tenant,
    )
    if 0.5 <= p.integer < 1.0:
        ints = pl.DataFrame({column: cells}).select(parse_value("integer", col).is_null()).to_series()
        p.odd = cells.filter(ints).unique(maintain_order=True).head(5).to_list()
    p.plain = (
        cells.filter(cells.str.contains(r"^\d{1,9}(?:\.\d+)?$")).unique().cast(pl.Float64).sort().to_list()
        if p.duration >= 0.9
        else []
    )
    return p, cells.unique(maintain_order=True).head(3).to_list()


def _numbers(values: list[float]) -> str:
    shown = [f"{v:g}" for v in values[:4]]
    return ", ".join(shown) + (", …" if len(values) > 4 else "")


def duration_unit(p: Profile) -> tuple[str, str, bool]:
    """The unit of a duration column's plain numbers, the reason, and whether it is sure (else `# CHECK`).

    The header decides when it names a unit (`Hours`, `Duration (h)`, `Mins`); else the plain numbers: a fraction
    (1.5) is hours — minutes are whole; whole numbers all from 15 up are minutes; whole numbers all up to 12 are
    probably hours (jobs of 1 to 12 minutes are rare) but asked; anything else is asked too."""
    named = header_unit(p.column)
    if named is not None:
        return named, f"the header {p.column!r} says {named}", True
    values = p.plain
    if not values:
        return "minutes", "no plain numbers in the sampled cells (they carry their units: 90m, 1:30)", False
    if any(v != int(v) for v in values) and max(values) <= 24:
        return "hours", f"plain numbers with fractions ({_numbers(values)}): hours, since minutes are whole", True
    if min(values) >= 15:
        return "minutes", f"plain whole numbers from {min(values):g} to {max(values):g}: minutes", True
    if max(values) <= 12:
        return "hours", f"plain numbers {_numbers(values)} could be hours or minutes; hours assumed", False
    return "minutes", f"plain numbers {_numbers(values)} could be hours or minutes; minutes assumed", False


def _unit_lines(p: Profile) -> list[str]:
    unit, why, sure = duration_unit(p)
    lines = [] if sure else [f'# CHECK: {why}: say which with unit = "minutes" or "hours"']
    return [*lines, f'unit = "{unit}"  # {why}' if sure else f'unit = "{unit}"']


@dataclass
class Guess:
    field: str
    column: str
    score: float
    evidence: list[str]
    lines: list[str]  # the TOML lines of the field besides `column`


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def score(field_name: str, p: Profile, examples: list[str], online: bool) -> Guess:
    """The score of column `p` for `field_name`, its evidence and the TOML it would take."""
    h, synonym = header_score(p.column, field_name)
    evidence = [f"header {'is' if h > 1 else 'like'} '{synonym}' ({_pct(min(h, 1.0))})"] if h >= 0.5 else []
    s, lines = h, list[str]()
    shown = f" (e.g. {', '.join(examples)})" if examples else ""
    if p.filled == 0:
        return Guess(field_name, p.column, h * 0.5, [*evidence, "every cell is blank"], lines)
    if p.date > 0.8:
        return Guess(field_name, p.column, h - 0.5, [*evidence, f"{_pct(p.date)} of cells look like dates"], lines)
    if field_name == "personId":
        if p.uuid >= 0.9:
            s += 0.6
            evidence.append(f"{_pct(p.uuid)} of cells are uuids")
            lines.append('parse = "uuid"')
        elif p.email >= 0.9:
            s += 0.3
            evidence.append(f"{_pct(p.email)} of cells are email addresses: looked up among the contact's persons")
            lines += ['lookup = "bigchange:persons"', 'by = "email"']
        elif h >= 0.85 and p.spaces >= 0.8:
            evidence.append("names: looked up among the contact's persons")
            lines += ['lookup = "bigchange:persons"', 'by = "name"']
        else:
            s -= 0.4
    elif field_name == "plannedDuration":
        if p.duration >= 0.9 and p.integer < 0.999:
            s += 0.4
            evidence.append(f"{_pct(p.duration)} of cells look like durations{shown}")
            lines += ['parse = "duration"', *_unit_lines(p)]
        elif p.duration >= 0.9:
            evidence.append(f"whole numbers{shown}")
            lines += ['parse = "duration"', *_unit_lines(p)]
        else:
            s -= 0.5
    elif field_name in ("typeId", "contactId"):
        kind = "jobTypes" if field_name == "typeId" else "contacts"
        noun = "job types" if kind == "jobTypes" else "contacts"
        matches = {k: v for k, v in p.tenant.items() if k.startswith(kind)}
        best = max(matches, key=lambda k: matches[k]) if matches else None
        if best is not None and matches[best] >= 0.5:
            by = best.split(":")[1]
            s += 0.6
            evidence.append(f"{_pct(matches[best])} of cells are {by}s of the tenant's {noun}")
            lines.append(f'lookup = "bigchange:{kind}"')
            if by != "name" or kind == "contacts":
                lines.append(f'by = "{by}"')
        elif p.integer >= 0.8 and not p.leading_zero:
            evidence.append(f"whole numbers{shown}: taken as BigChange ids")
            if p.odd:
                listed = ", ".join(repr(v) for v in p.odd)
                evidence.append(
                    f"{_pct(1 - p.integer)} of cells are not ({listed}): likely mistakes, which validate will name"
                )
            s += 0.1
        elif p.uuid > 0.5 or p.email > 0.5 or p.avg_len > 60:
            s -= 0.5
        else:
            by = "name" if kind == "jobTypes" or p.spaces >= 0.5 else "reference"
            if p.leading_zero:
                evidence.append("numbers with leading zeros: codes, not BigChange ids")
            note = "checked against the tenant when validating" if not online else "few match the tenant"
            evidence.append(f"text{shown}: looked up against the tenant's {noun} by {by} ({note})")
            lines.append(f'lookup = "bigchange:{kind}"')
            if kind == "contacts":
                lines.append(f'by = "{by}"')
            if field_name == "typeId" and p.distinct <= 0.2:
                s += 0.1
    elif field_name == "reference":
        if p.distinct >= 0.95 and p.spaces <= 0.05 and 0 < p.max_len <= 40:
            s += 0.3
            what = "unique" if p.distinct == 1.0 else f"{_pct(p.distinct)} distinct"
            evidence.append(f"{what} short codes{shown}")
        elif p.distinct < 0.5 or p.avg_len > 40:
            s -= 0.5
    elif field_name == "description":
        if p.avg_len >= 15 and p.spaces >= 0.8:
            s += 0.3
            evidence.append(f"free text (average {p.avg_len:.0f} characters)")
        else:
            s -= 0.3
    elif field_name == "orderNumber" and (p.uuid > 0.5 or p.avg_len > 60):
        s -= 0.5
    return Guess(field_name, p.column, s, evidence, lines)


def _tenant_keys(args: argparse.Namespace) -> dict[str, set[str]]:
    from pipeline import logs
    from pipeline.settings import load_settings
    from pipeline.tenant import TenantSource, normalise

    logs.quiet_unless_configured()
    data = TenantSource(load_settings(args.env_file), home=args.state_dir).data
    return {
        "jobTypes:name": {normalise(t.get("name")) for t in data.job_types if t.get("name")},
        "contacts:reference": {normalise(c.get("reference")) for c in data.contacts if c.get("reference")},
        "contacts:name": {normalise(c.get("name")) for c in data.contacts if c.get("name")},
    }


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draft(
    raw: RawTable, online_keys: dict[str, set[str]] | None = None, header_row: int = 1
) -> tuple[str, dict[str, str]]:
    """The TOML text of a drafted mapping for `raw`, and the field → column it chose."""
    frame = raw.frame.head(SAMPLE_ROWS)
    profiles = [profile(frame, c, online_keys or {}) for c in raw.columns]
    guesses = [score(f, p, ex, online_keys is not None) for f in API_FIELDS for p, ex in profiles]
    chosen: dict[str, Guess] = {}
    used: set[str] = set()
    for g in sorted(guesses, key=lambda g: -g.score):
        if g.score >= THRESHOLD and g.field not in chosen and g.column not in used:
            chosen[g.field] = g
            used.add(g.column)
    out = [
        f"# Drafted by `jobimport init-mapping` from {raw.source.name} ({frame.height} rows sampled). Check every",
        "# guess below (each says why it was made), then run `jobimport validate FILE --mapping THIS_FILE`.",
        "",
    ]
    source = [f"header_row = {header_row}"] if header_row != 1 else []
    if raw.kind == "csv":
        if raw.delimiter and raw.delimiter != ",":
            source.append(f"delimiter = {_quote(raw.delimiter)}")
        if raw.encoding and raw.encoding not in ("utf-8", "utf-8-sig", "ascii"):
            source.append(f"encoding = {_quote(raw.encoding)}")
    elif raw.sheet:
        source.append(f"sheet = {_quote(raw.sheet)}")
    if source:
        out += ["[source]", *source, ""]
    for name in API_FIELDS:
        hit = chosen.get(name)
        if hit is not None:
            out.append(f"# {hit.column!r} → {name}: " + "; ".join(hit.evidence or ["best remaining match"]))
            out += [f"[fields.{name}]", f"column = {_quote(hit.column)}", *hit.lines, ""]
        elif name in REQUIRED_FIELDS:
            out += [
                f'# {name}: no column looked like it. Every job needs one: set `column = "…"` (with a lookup if the',
                "# cells are codes or names), or a constant id; until then validation reports it on every row.",
                f"[fields.{name}]",
                "value = 0",
                "",
            ]
        else:
            out.append(f"# {name}: no column looked like it (optional)")
    rest = [c for c in raw.columns if c not in used]
    dates = [p.column for p, _ in profiles if p.column in rest and p.date > 0.8]
    if dates:
        out += [
            "",
            f"# Dates: {', '.join(repr(c) for c in dates)} {'holds' if len(dates) == 1 else 'hold'} dates, and POST "
            "/v1/jobs takes no date (no planned start,",
            "# no due date): not importable as job fields; a text custom field can carry them as text.",
        ]
    if rest:
        out += [
            "",
            "# Columns not mapped: " + ", ".join(repr(c) for c in rest) + ".",
            "# Custom fields: the API has no endpoint for their definitions; take each id from BigChange (the job",
            "# type's custom field set) and, if it belongs to some job types only, list them (checked before sending).",
            "# [custom_fields]",
        ]
        out += [f"# {_quote(c)} = {{ definition_id = 0, job_types = [] }}" for c in rest]
    return "\n".join(out) + "\n", {name: g.column for name, g in chosen.items()}


def init_mapping_command(args: argparse.Namespace) -> int:
    from pipeline.mapping import load_mapping
    from pipeline.read import read_table

    if args.output is not None and args.output.exists() and not args.force:
        raise UsageError(f"init-mapping: {args.output} exists; choose another -o or add --force")
    raw = read_table(args.input, sheet=args.sheet, header_row=args.header_row or 1)
    keys = _tenant_keys(args) if args.online else None
    text, chosen = draft(raw, keys, args.header_row or 1)
    if args.output is None:
        print(text, end="")
        return 0
    args.output.write_text(text, encoding="utf-8")
    load_mapping(args.output)  # the draft must load: a bug of ours if not
    print(f"wrote {args.output}: {len(chosen)} of {len(API_FIELDS)} fields mapped from {len(raw.columns)} columns")
    print(f"  next: jobimport validate {args.input} --mapping {args.output}")
    return 0
