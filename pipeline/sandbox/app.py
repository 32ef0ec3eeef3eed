"""The sandbox's aiohttp application: the API of openapi.yaml (auth, jobs, job types, contacts, persons) with
latency, rate limiting and fault injection around it, plus the /_sandbox inspection endpoints (admin.py).

Order of events for an API call, all synchronous at arrival (so seeded draws follow request order): rate
limit (429), latency draw, token and tenant (401/403), fault draw (POST /v1/jobs only). Then the latency
wait, then the answer: an injected 500/502/503 before anything is read or created, else the real handler;
a `lost` fault drops the connection after the handler ran (a valid job IS created), a `slow` one delays it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.sandbox.auth import TokenIssuer
from pipeline.sandbox.config import SandboxConfig
from pipeline.sandbox.data import ReferenceData, load_reference_data
from pipeline.sandbox.faults import Fault, FaultInjector
from pipeline.sandbox.problems import (
    gateway_502,
    json_response,
    problem,
    unavailable_503,
    validation_problem,
)
from pipeline.sandbox.rules import INT32_MAX, INT64_MAX, INT64_MIN, Limits, validate_create
from pipeline.sandbox.store import JobStore

MAX_FILTER_VALUES = 50
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
JSON_TYPES = ("application/json",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = logging.getLogger(__name__)


class Tenant:
    """One customer of the server: its own reference data and its own jobs."""

    def __init__(self, customer_id: int, data: ReferenceData, store: JobStore) -> None:
        self.customer_id = customer_id
        self.data = data
        self.store = store


def _state_file(config: SandboxConfig, customer_id: int) -> Path | None:
    """--state FILE: the jobs of one tenant in FILE; of several, in FILE-<customer><suffix> each."""
    if config.state is None or not config.customers:
        return config.state
    return config.state.with_name(f"{config.state.stem}-{customer_id}{config.state.suffix}")


class SandboxState:
    """Everything one server knows: reference data, jobs, tokens, faults, counters (jobs and reference data per
    tenant; `data` and `store` are the first tenant's, the only one unless `--customers` names several)."""

    def __init__(self, config: SandboxConfig) -> None:
        config = config.resolved()
        assert config.client_id is not None and config.client_secret is not None and config.customer_id is not None
        self.config = config
        self.limits = Limits(config.max_reference, config.max_description, config.max_custom_value)
        customers = config.tenants() if config.customer_id in config.tenants() else (config.customer_id,)
        self.tenants = {
            c: Tenant(c, load_reference_data(config.data), JobStore(config.first_id, _state_file(config, c)))
            for c in customers
        }
        first = self.tenants[customers[0]]
        self.data: ReferenceData = first.data
        self.store = first.store
        self._only = first if len(self.tenants) == 1 else None
        self.faults = FaultInjector(config.faults(), config.seed)
        self.auth = TokenIssuer(
            config.client_id, config.client_secret.reveal(), config.customer_id, tuple(self.tenants)
        )
        self.requests: Counter[tuple[str, str]] = Counter()
        self.created = 0
        self.clients_gone = 0  # connections lost while a request was read (a killed client)

    def tenant(self, request: web.Request) -> Tenant:
        """The tenant an authorised request names in its Customer-Id header."""
        if self._only is not None:
            return self._only
        return self.tenants[int(request.headers["Customer-Id"].strip())]

    def reset(self) -> None:
        for tenant in self.tenants.values():
            tenant.store.reset()
        self.faults.reset()
        self.auth.reset()
        self.requests.clear()
        self.created = 0
        self.clients_gone = 0


def _int_text(text: str) -> int | None:
    text = text.strip()
    if not text or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())) or not text.isascii():
        return None
    return int(text)


def _query(request: web.Request) -> dict[str, list[str]]:
    """Query parameters by lower-case name (ASP.NET binds them case-insensitively); repeated ones in order."""
    values: dict[str, list[str]] = {}
    for key, value in request.query.items():
        values.setdefault(key.lower(), []).append(value)
    return values


def _paging(query: dict[str, list[str]], errors: dict[str, list[str]]) -> tuple[int, int]:
    result = []
    for name, key, default, upper in (
        ("pagenumber", "PageNumber", 1, INT32_MAX),
        ("pagesize", "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    ):
        raw = query.get(name)
        value = default if not raw else _int_text(raw[0])
        if value is None or not 1 <= value <= upper:
            shown = raw[0] if raw else ""
            errors.setdefault(key, []).append(f"The field {key} must be between 1 and {upper}, got '{shown[:40]}'.")
            value = default
        result.append(value)
    return result[0], result[1]


def _page(items: list[Any], number: int, size: int) -> dict[str, Any]:
    start = (number - 1) * size
    chunk = items[start : start + size]
    return {"items": chunk, "pageNumber": number, "pageSize": size, "pageItemCount": len(chunk)}


def _ints(values: list[str], key: str, errors: dict[str, list[str]]) -> list[int]:
    if len(values) > MAX_FILTER_VALUES:
        errors.setdefault(key, []).append(
            f"At most {MAX_FILTER_VALUES} {key} values are allowed per call, got {len(values)}."
        )
    result = []
    for value in values:
        number = _int_text(value)
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            errors.setdefault(key, []).append(f"The value '{value[:40]}' is not valid for {key}.")
        else:
            result.append(number)
    return result


class Api:
    """The /auth and /v1 handlers of one server."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def token(self, request: web.Request) -> web.StreamResponse:
        return await self.state.auth.token(request, self.state.faults.settings.token_lifetime)

    async def create_job(self, request: web.Request) -> web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES and not media.endswith("+json"):
            return problem(
                415, f"Send the job as application/json (got Content-Type '{content_type[:60]}').", request.path
            )
        raw = await request.read()
        if not raw.strip():
            return problem(
                400,
                "A non-empty request body is required.",
                request.path,
                errors={"$": ["A non-empty request body is required."]},
            )
        try:
            body = _DECODER.decode(raw.decode(json.detect_encoding(raw)))
            if b"\\u" in raw:  # an escaped lone surrogate ("\ud800") is not text: .NET refuses it too
                json.dumps(body, ensure_ascii=False).encode()
        except (ValueError, UnicodeEncodeError) as exc:  # UnicodeDecodeError included
            message = f"The request body is not valid JSON: {exc}."
            return problem(400, message, request.path, errors={"$": [message]})
        if type(body) is not dict:
            message = "The JSON value could not be converted to JobCreate: expected an object."
            return problem(400, message, request.path, errors={"$": [message]})
        tenant = self.state.tenant(request)
        errors = validate_create(body, tenant.data, self.state.limits)
        if errors:
            return validation_problem(request.path, errors)
        job = tenant.store.create(body)
        self.state.created += 1
        return web.Response(body=b'{"id":%d}' % job["id"], status=201, content_type="application/json", charset="utf-8")

    async def list_jobs(self, request: web.Request) -> web.StreamResponse:
        query = _query(request)
        errors: dict[str, list[str]] = {}
        number, size = _paging(query, errors)
        references = query.get("reference", [])
        if len(references) > MAX_FILTER_VALUES:
            errors.setdefault("Reference", []).append(
                f"At most {MAX_FILTER_VALUES} Reference values are allowed per call, got {len(references)}."
            )
        ids = _ints(query.get("id", []), "Id", errors)
        if not references and "id" not in query:
            errors.setdefault("Filter", []).append(
                "A filter is required: id or reference (at most 50 values each), or a full date range."
            )
        if errors:
            return validation_problem(request.path, errors)
        jobs = self.state.tenant(request).store.find(references, ids)
        items = [
            {
                "id": job["id"],
                "reference": job["reference"],
                "typeId": job["typeId"],
                "contactId": job["contactId"],
                "status": job["status"],
            }
            for job in jobs
        ]
        return json_response(_page(items, number, size))

    async def list_job_types(self, request: web.Request) -> web.StreamResponse:
        data = self.state.tenant(request).data
        return self._list(request, [t.public for t in data.job_types.values()])

    async def get_job_type(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["jobTypeId"]
        type_id = _int_text(raw)
        job_type = self.state.tenant(request).data.job_types.get(type_id) if type_id is not None else None
        if job_type is None:
            return problem(404, f"Job type '{raw[:40]}' does not exist.", request.path)
        return json_response(job_type.public)

    async def list_contacts(self, request: web.Request) -> web.StreamResponse:
        return self._list(request, list(self.state.tenant(request).data.contacts.values()))

    async def get_contact(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["contactId"]
        contact_id = _int_text(raw)
        contact = self.state.tenant(request).data.contacts.get(contact_id) if contact_id is not None else None
        if contact is None:
            return problem(404, f"Contact '{raw[:40]}' does not exist.", request.path)
        return json_response(contact)

    async def list_persons(self, request: web.Request) -> web.StreamResponse:
        query = _query(request)
        errors: dict[str, list[str]] = {}
        contact_ids = set(_ints(query.get("contactid", []), "ContactId", errors))
        number, size = _paging(query, errors)
        if errors:
            return validation_problem(request.path, errors)
        persons = self.state.tenant(request).data.persons
        if "contactid" in query:
            persons = [p for p in persons if p["contactId"] in contact_ids]
        return json_response(_page(persons, number, size))

    def _list(self, request: web.Request, items: list[Any]) -> web.StreamResponse:
        errors: dict[str, list[str]] = {}
        number, size = _paging(_query(request), errors)
        if errors:
            return validation_problem(request.path, errors)
        return json_response(_page(items, number, size))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Built once: json.loads(..., parse_constant=...) would build a decoder per request.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def guarded(state: SandboxState, key: str, handler: Handler, *, auth: bool = True, create: bool = False) -> Handler:
    """Wrap an API handler with rate limit, latency, auth, fault injection and counting."""
    faults = state.faults
    issuer = state.auth
    requests = state.requests
    status_key: dict[
        int, tuple[str, str]
    ] = {}  # status code → (key, "201"): avoids building tuples and strings per request

    async def endpoint(request: web.Request) -> web.StreamResponse:
        wait = faults.admit()
        delay = faults.delay()
        fault = Fault.NONE
        response: web.StreamResponse | None = None
        if wait is not None:
            response = problem(
                429,
                f"Too many requests: the rate limit is {faults.settings.rate_limit:g}/s. Retry after {wait} s.",
                request.path,
                headers={"Retry-After": str(wait)},
            )
        else:
            if auth:
                response = issuer.authorize(request)
            if response is None and create:
                fault = faults.draw()
        if delay > 0.0:
            await asyncio.sleep(delay)
        if response is None:
            if fault is Fault.NONE or fault is Fault.LOST or fault is Fault.SLOW:
                response = await handler(request)
            elif fault is Fault.E500:
                response = problem(500, "An unexpected error occurred (injected by the sandbox).", request.path)
            elif fault is Fault.E502:
                response = gateway_502()
            else:
                response = unavailable_503(faults.settings.retry_after)
        if fault is Fault.LOST:
            requests[key, "lost"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionDropped()
        if fault is Fault.SLOW:
            await asyncio.sleep(faults.settings.slow_ms / 1000.0)
        counted = status_key.get(response.status)
        if counted is None:
            counted = status_key[response.status] = (key, str(response.status))
        requests[counted] += 1
        return response

    return endpoint


class ConnectionDropped(web.HTTPException):
    """Raised after aborting the transport: aiohttp has nothing left to write to."""

    status_code = 200


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method, body too large) as problem details; a client that went
    away while its request was read (killed, connection reset) is one debug line, not a traceback."""
    try:
        return await handler(request)
    except ConnectionError as exc:
        _log.debug("client %s went away during %s %s: %s", request.remote, request.method, request.path, exc)
        request.app[STATE].clients_gone += 1
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionDropped() from None
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(
            exc.status,
            exc.reason if exc.status != 404 else f"No endpoint at {request.path}.",
            request.path,
            headers={"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None,
        )


def build_app(config: SandboxConfig) -> web.Application:
    """The aiohttp application of one sandbox server (state in app[STATE])."""
    from pipeline.sandbox.admin import add_admin_routes

    state = SandboxState(config)
    api = Api(state)
    app = web.Application(middlewares=[problem_middleware])
    app[STATE] = state
    routes: list[tuple[str, str, Handler, bool, bool]] = [
        ("POST", "/auth/tokens", api.token, False, False),
        ("POST", "/v1/jobs", api.create_job, True, True),
        ("GET", "/v1/jobs", api.list_jobs, True, False),
        ("GET", "/v1/jobTypes", api.list_job_types, True, False),
        ("GET", "/v1/jobTypes/{jobTypeId}", api.get_job_type, True, False),
        ("GET", "/v1/contacts", api.list_contacts, True, False),
        ("GET", "/v1/contacts/{contactId}", api.get_contact, True, False),
        ("GET", "/v1/persons", api.list_persons, True, False),
    ]
    for method, path, handler, auth, create in routes:
        app.router.add_route(method, path, guarded(state, f"{method} {path}", handler, auth=auth, create=create))
    add_admin_routes(app, state)

    async def close_store(_: web.Application) -> None:
        for tenant in state.tenants.values():
            tenant.store.close()

    app.on_cleanup.append(close_store)
    return app


STATE = web.AppKey("sandbox_state", SandboxState)
