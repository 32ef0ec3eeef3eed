"""The sandbox's inspection and control endpoints under /_sandbox (no auth, no latency, no faults, not counted):

- GET  /_sandbox/health  → {"status": "ok"}
- GET  /_sandbox/stats   → requests by path and status, jobs created, faults by kind, tokens issued, clients gone,
                           creations_per_reference, duplicates (references created more than once); with several
                           tenants, totals over all, references as "<customer>/<reference>", and `customers`
- GET  /_sandbox/jobs    → {"jobs": [every created job with its full body]} (optional ?reference= filters;
                           ?customer=ID: that tenant's, with --customers; default: the first tenant's)
- POST /_sandbox/reset   → forget jobs and counters, reseed the fault generator (ids keep growing)
- GET  /_sandbox/faults  → current fault settings and seed
- POST /_sandbox/faults  → change any of them: a JSON object such as {"p500": 0.2, "latency_ms": 5, "seed": 7}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.sandbox.problems import json_response, problem

if TYPE_CHECKING:
    from pipeline.sandbox.app import SandboxState


def stats_body(state: SandboxState) -> dict[str, Any]:
    requests: dict[str, dict[str, int]] = {}
    for (path, status), count in sorted(state.requests.items()):
        requests.setdefault(path, {})[status] = count
    store = state.store
    body: dict[str, Any] = {
        "requests": requests,
        "requests_total": sum(state.requests.values()),
        "jobs_created": state.created,
        "jobs_stored": len(store.jobs),
        "jobs_without_reference": store.without_reference(),
        "next_id": store.next_id,
        "faults": dict(state.faults.counts),
        "tokens_issued": state.auth.issued,
        "clients_gone": state.clients_gone,
        "creations_per_reference": store.creations_per_reference(),
        "duplicates": store.duplicates(),
    }
    if len(state.tenants) > 1:  # several tenants: totals over all, references as "<customer>/<reference>"
        tenants = state.tenants.items()
        body["jobs_stored"] = sum(len(t.store.jobs) for _, t in tenants)
        body["jobs_without_reference"] = sum(t.store.without_reference() for _, t in tenants)
        body["creations_per_reference"] = {
            f"{c}/{r}": n for c, t in tenants for r, n in t.store.creations_per_reference().items()
        }
        body["duplicates"] = [f"{c}/{r}" for c, t in tenants for r in t.store.duplicates()]
        body["customers"] = {
            str(c): {"jobs_stored": len(t.store.jobs), "duplicates": t.store.duplicates()} for c, t in tenants
        }
    return body


def faults_body(state: SandboxState) -> dict[str, Any]:
    return {**state.faults.settings.as_dict(), "seed": state.faults.seed}


def add_admin_routes(app: web.Application, state: SandboxState) -> None:
    async def health(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.StreamResponse:
        return json_response(stats_body(state))

    async def jobs(request: web.Request) -> web.StreamResponse:
        references = request.query.getall("reference", [])
        customer = request.query.get("customer")
        if customer is not None and (not customer.isdigit() or int(customer) not in state.tenants):
            return problem(404, f"No customer '{customer[:20]}' on this sandbox.", request.path)
        store = state.tenants[int(customer)].store if customer is not None else state.store
        selected = store.find(references, []) if references else store.jobs
        return json_response({"jobs": selected})

    async def reset(request: web.Request) -> web.StreamResponse:
        state.reset()
        return json_response(stats_body(state))

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return json_response(faults_body(state))

    async def set_faults(request: web.Request) -> web.StreamResponse:
        try:
            changes = json.loads(await request.read() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of fault settings")
            state.faults.update(changes)
        except ValueError as exc:
            return problem(400, f"{exc}.", request.path)
        return json_response(faults_body(state))

    app.router.add_get("/_sandbox/health", health)
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_get("/_sandbox/jobs", jobs)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/faults", get_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
