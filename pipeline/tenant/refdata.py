"""The tenant's reference data: job types, contacts and contact persons, fetched from the API and cached.

`jobimport tenant pull` (and `validate --online` / `run` when their cache is too old) fetch every page of
`GET /v1/jobTypes`, `GET /v1/contacts` and `GET /v1/persons` (for the contacts a file uses, `contactId` filters of
at most 50 values, or every person with `--all-persons`) through the same client, token and adaptive gate as a
run. The API gives no total count, so page 1 is fetched alone and, when it is full, the following pages are
fetched concurrently by a bounded window of workers until one comes back short (at most window − 1 requests
past the end are wasted).

The result is cached per tenant identity (API + customer id) in `<state home>/tenants/<slug>/refdata.json`
with the time it was fetched; a cache younger than `--refdata-max-age` is reused, and persons of contacts it
does not cover yet are fetched and merged into it. `export_csv` writes `job_types.csv`, `contacts.csv` and
`persons.csv` in the `[lookups.X] file =` format (key first, id second).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline import logs
from pipeline.errors import AuthRefused, JobImportError, RunStopped, TransientError
from pipeline.retry import RetryPolicy, call_with_retries, retry_now
from pipeline.settings import Settings
from pipeline.state import TenantIdentity, tenant_dir
from pipeline.submit.client import ApiClient, ClientOptions
from pipeline.submit.throttle import Gate

REFDATA_FILE = "refdata.json"
DEFAULT_MAX_AGE_S = 3600.0
PAGE_SIZE = 1000
MAX_FILTER_VALUES = 50
DEFAULT_CONCURRENCY = 8
MAX_ATTEMPTS = 6
CACHE_VERSION = 1

#: Scope each list endpoint needs (BIGCHANGE.md), for the message when the API key lacks it.
SCOPES = {"/jobTypes": "jobs:read", "/contacts": "contacts:read", "/persons": "contacts:persons:read"}


def normalise(text: object) -> str:
    """The comparison form of a look-up key, as for file look-ups: lower case, no whitespace."""
    return "".join(str(text).lower().split()) if text is not None else ""


@dataclass
class PullStats:
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    pages: dict[str, int] = field(default_factory=dict)  # path → pages fetched


@dataclass
class RefData:
    """One tenant's reference data at `fetched_at` (epoch seconds). `persons_scope` is None when every person
    was fetched, else the contact ids whose persons were."""

    identity: TenantIdentity
    fetched_at: float
    job_types: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    persons: list[dict[str, Any]]
    persons_scope: frozenset[int] | None = frozenset()

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.fetched_at)

    @property
    def fetched_at_iso(self) -> str:
        return datetime.fromtimestamp(self.fetched_at, UTC).isoformat(timespec="seconds")

    @cached_property
    def job_type_by_id(self) -> dict[int, dict[str, Any]]:
        return {int(t["id"]): t for t in self.job_types if t.get("id") is not None}

    @cached_property
    def contact_by_id(self) -> dict[int, dict[str, Any]]:
        return {int(c["id"]): c for c in self.contacts if c.get("id") is not None}

    @cached_property
    def person_by_id(self) -> dict[str, dict[str, Any]]:
        return {str(p["id"]).lower(): p for p in self.persons if p.get("id")}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "identity": json.loads(self.identity.to_json()),
            "fetched_at": self.fetched_at_iso,
            "fetched_at_epoch": self.fetched_at,
            "persons_scope": None if self.persons_scope is None else sorted(self.persons_scope),
            "jobTypes": self.job_types,
            "contacts": self.contacts,
            "persons": self.persons,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RefData:
        scope = doc.get("persons_scope")
        return cls(
            identity=TenantIdentity.from_json(json.dumps(doc["identity"])),
            fetched_at=float(doc["fetched_at_epoch"]),
            job_types=list(doc["jobTypes"]),
            contacts=list(doc["contacts"]),
            persons=list(doc["persons"]),
            persons_scope=None if scope is None else frozenset(int(c) for c in scope),
        )

    def with_persons(self, persons: list[dict[str, Any]], contact_ids: Iterable[int]) -> RefData:
        """A copy with the persons of `contact_ids` added (same fetch time: the oldest part decides the age)."""
        known = {str(p.get("id")).lower() for p in self.persons}
        merged = self.persons + [p for p in persons if str(p.get("id")).lower() not in known]
        scope = None if self.persons_scope is None else self.persons_scope | frozenset(contact_ids)
        return RefData(self.identity, self.fetched_at, self.job_types, self.contacts, merged, scope)


# --- fetching ---------------------------------------------------------------------------------------------------


class _Puller:
    """Every page of the list endpoints through one client and one adaptive gate."""

    def __init__(self, api: ApiClient, concurrency: int, stats: PullStats, attempts: int = MAX_ATTEMPTS) -> None:
        self.api = api
        self.attempts = attempts
        self.window = max(1, concurrency)
        self.gate = Gate(self.window, initial=self.window)
        self.stats = stats

    async def page(self, path: str, params: list[tuple[str, str | int]], number: int, size: int) -> dict[str, Any]:
        query: list[tuple[str, str | int]] = [*params, ("pageNumber", number), ("pageSize", size)]
        policy = RetryPolicy(attempts=self.attempts, base_s=0.25, max_s=8.0, max_wait_s=60.0)

        async def once() -> dict[str, Any]:
            await self.gate.acquire()
            try:
                self.stats.requests += 1
                body, latency = await self.api.get_page(path, query)
            finally:
                await self.gate.release()
            self.gate.on_success(latency)
            self.stats.pages[path] = self.stats.pages.get(path, 0) + 1
            return body

        def on_failure(exc: JobImportError, attempt: int) -> None:
            if not isinstance(exc, TransientError):
                return
            if attempt < self.attempts and retry_now(exc):
                self.stats.retries += 1
            if exc.status == 429:  # a Retry-After also pauses the gate for every worker
                self.gate.on_throttled(exc.retry_after)
            elif exc.status is not None:
                self.gate.on_overloaded(exc.retry_after)

        try:
            return await call_with_retries(once, policy, on_failure)
        except TransientError as exc:
            raise RunStopped(f"the tenant's reference data could not be fetched: {exc}") from None
        except AuthRefused as exc:
            if not str(exc).startswith("the API refused GET"):
                raise  # the credentials themselves (the token endpoint): its message says what to check
            scope = SCOPES.get(path, "jobs:read")
            raise AuthRefused(
                f"{exc}: check BIGCHANGE_CUSTOMER_ID, and that the API key has the {scope} scope to read the "
                "tenant's reference data (add it in the portal; a run without it: --no-preflight)"
            ) from None

    async def all_pages(self, path: str, params: list[tuple[str, str | int]] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list: page 1 alone, then a window of workers until a page comes back short."""
        params = params or []
        first = await self.page(path, params, 1, PAGE_SIZE)
        size = int(first.get("pageSize") or PAGE_SIZE)  # the server may cap the size asked for
        pages: dict[int, list[dict[str, Any]]] = {1: list(first["items"])}
        if _short(first, size):
            return pages[1]
        end: int | None = None  # the first short page
        next_number = 2

        async def worker() -> None:
            nonlocal next_number, end
            while end is None or next_number <= end:
                number = next_number
                next_number += 1
                body = await self.page(path, params, number, size)
                pages[number] = list(body["items"])
                if _short(body, size):
                    end = number if end is None else min(end, number)

        await asyncio.gather(*(worker() for _ in range(self.window)))
        assert end is not None
        return [item for number in range(1, end + 1) for item in pages.get(number, [])]

    async def persons(self, contact_ids: Iterable[int] | None) -> list[dict[str, Any]]:
        """The persons of `contact_ids` (≤ 50 per filter, every chunk concurrently), or all when None."""
        if contact_ids is None:
            return await self.all_pages("/persons")
        ids = sorted(set(contact_ids))
        chunks = [ids[i : i + MAX_FILTER_VALUES] for i in range(0, len(ids), MAX_FILTER_VALUES)]
        found = await asyncio.gather(
            *(self.all_pages("/persons", [("contactId", c) for c in chunk]) for chunk in chunks)
        )
        return [person for chunk in found for person in chunk]


def _short(body: dict[str, Any], size: int) -> bool:
    items = body.get("items") or []
    return int(body.get("pageItemCount", len(items)) or 0) < size or not items


def _client(settings: Settings, concurrency: int, attempts: int) -> ApiClient:
    logs.quiet_unless_configured()  # the client logs token refreshes: into a run's log, else nowhere
    api = ApiClient(settings, ClientOptions(max_connections=max(1, concurrency)))
    api.tokens.attempts = min(api.tokens.attempts, attempts)
    return api


async def _pull(
    settings: Settings,
    contact_ids: Iterable[int] | None,
    all_persons: bool,
    concurrency: int,
    stats: PullStats,
    attempts: int = MAX_ATTEMPTS,
) -> RefData:
    started = time.time()
    async with _client(settings, concurrency, attempts) as api:
        puller = _Puller(api, concurrency, stats, attempts)
        ids = None if all_persons else sorted(set(contact_ids or ()))
        job_types, contacts, persons = await asyncio.gather(
            puller.all_pages("/jobTypes"),
            puller.all_pages("/contacts"),
            puller.persons(ids) if ids is None or ids else _nothing(),
        )
    identity = TenantIdentity.of(settings.base_url, settings.customer_id)
    return RefData(identity, started, job_types, contacts, persons, None if ids is None else frozenset(ids))


async def _nothing() -> list[dict[str, Any]]:
    return []


async def _pull_persons(
    settings: Settings, contact_ids: list[int], concurrency: int, stats: PullStats, attempts: int
) -> list[Any]:
    async with _client(settings, concurrency, attempts) as api:
        return await _Puller(api, concurrency, stats, attempts).persons(contact_ids)


def pull(
    settings: Settings,
    *,
    contact_ids: Iterable[int] | None = None,
    all_persons: bool = False,
    home: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    attempts: int = MAX_ATTEMPTS,
) -> tuple[RefData, PullStats]:
    """Fetch the tenant's reference data now and cache it. Raises AuthRefused / RunStopped (exit 3)."""
    stats = PullStats()
    started = time.perf_counter()
    data = asyncio.run(_pull(settings, contact_ids, all_persons, concurrency, stats, attempts))
    stats.seconds = time.perf_counter() - started
    save(data, home)
    return data, stats


# --- cache ------------------------------------------------------------------------------------------------------


def cache_path(identity: TenantIdentity, home: Path | None = None) -> Path:
    return tenant_dir(identity, home) / REFDATA_FILE


def save(data: RefData, home: Path | None = None) -> Path:
    """Write the cache atomically (a reader never sees half a file)."""
    path = cache_path(data.identity, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")  # (a run's fetch may be in a thread)
    tmp.write_text(json.dumps(data.to_json(), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load(identity: TenantIdentity, home: Path | None = None) -> RefData | None:
    """The cached reference data of `identity`, or None when there is none (or it is unreadable: pull again)."""
    path = cache_path(identity, home)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != CACHE_VERSION:
            return None
        data = RefData.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data if data.identity == identity else None


class TenantSource:
    """Reference data for a run: the cache when younger than `max_age_s`, else a pull; persons fetched on demand
    for the contacts a file uses (`persons_of`), merged into the cache."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        home: Path | None = None,
        say: Callable[[str], None] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.settings = settings
        self.attempts = attempts
        self.home = home
        self.say = say or (lambda text: None)
        self.concurrency = concurrency
        self.identity = TenantIdentity.of(settings.base_url, settings.customer_id)
        self.stats = PullStats()
        cached = load(self.identity, home)
        if cached is not None and cached.age_s <= max_age_s:
            self.data = cached
            self.pulled = False
        else:
            self.data, self.stats = pull(settings, home=home, concurrency=concurrency, attempts=attempts)
            self.pulled = True
            self.say(
                f"reference data of {self.identity}: {len(self.data.job_types)} job types, "
                f"{len(self.data.contacts)} contacts fetched in {self.stats.seconds:.1f} s"
            )

    def persons_of(self, contact_ids: Iterable[int]) -> RefData:
        """The reference data with the persons of `contact_ids` (fetched now for contacts the cache lacks)."""
        wanted = {int(c) for c in contact_ids}
        missing = sorted(wanted if self.data.persons_scope is None else wanted - self.data.persons_scope)
        if self.data.persons_scope is None or not missing:
            return self.data
        stats = PullStats()
        started = time.perf_counter()
        persons = asyncio.run(_pull_persons(self.settings, missing, self.concurrency, stats, self.attempts))
        self.stats.requests += stats.requests
        self.stats.retries += stats.retries
        self.stats.seconds += time.perf_counter() - started
        self.data = self.data.with_persons(persons, missing)
        save(self.data, self.home)
        self.say(f"persons of {len(missing)} contacts: {len(persons)} fetched in {time.perf_counter() - started:.1f} s")
        return self.data


# --- export -----------------------------------------------------------------------------------------------------


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> tuple[int, int]:
    """Write a look-up CSV keyed on its first column; rows whose key is blank or repeated (with another id) are
    left out, since a look-up file cannot hold them. Returns (written, left out)."""
    ids: dict[str, set[str]] = {}
    for row in rows:
        ids.setdefault(normalise(row[0]), set()).add(str(row[1]))
    kept = [r for r in rows if normalise(r[0]) and len(ids[normalise(r[0])]) == 1]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in r] for r in kept)
    return len(kept), len(rows) - len(kept)


def export_csv(data: RefData, folder: Path) -> dict[str, tuple[Path, int, int]]:
    """job_types.csv (name,id,…), contacts.csv (reference,id,name), persons.csv (email,id,contactId,…): each
    usable as `[lookups.X] file = "…"` (rows with a blank or shared key left out); and persons_all.csv, every
    person, for reading. Returns file name → (path, rows written, rows left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "job_types.csv": (
            ["name", "id", "isArchived", "isOrderNumberRequired", "plannedDuration"],
            [
                [
                    t.get("name"),
                    t.get("id"),
                    t.get("isArchived"),
                    t.get("isOrderNumberRequired"),
                    t.get("plannedDuration"),
                ]
                for t in data.job_types
            ],
        ),
        "contacts.csv": (
            ["reference", "id", "name"],
            [[c.get("reference"), c.get("id"), c.get("name")] for c in data.contacts],
        ),
        "persons.csv": (
            ["email", "id", "contactId", "forename", "surname"],
            [
                [p.get("email"), p.get("id"), p.get("contactId"), p.get("forename"), p.get("surname")]
                for p in data.persons
            ],
        ),
    }
    out = {}
    for name, (header, rows) in tables.items():
        path = folder / name
        written, left = _write(path, header, rows)
        out[name] = (path, written, left)
    # Persons often share an e-mail across contacts (one engineer, several sites): persons.csv, a look-up file,
    # cannot hold those, so every person is also written, unkeyed, for people to read and choose from.
    header, rows = tables["persons.csv"]
    every = folder / "persons_all.csv"
    with every.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    out["persons_all.csv"] = (every, len(rows), 0)
    return out
