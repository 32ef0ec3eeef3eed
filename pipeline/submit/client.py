"""The BigChange API client: OAuth client credentials, tenant header, timeouts, and classification of answers.

Every answer to a create is classified into one `Answer` so that the submit stage never has to look at HTTP
details: created (201), rejected (400/403/422, final for that row), transient (nothing was created: 429,
502/503/504, connection refused before the request left — safe to send again), unknown (the job may exist: 500,
a read timeout, a connection dropped after the request was written — reconcile by reference, never resend
blindly), or auth (401 after one token refresh: a configuration problem for the whole run).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
import httpx
import structlog

from pipeline import __version__
from pipeline.errors import AuthRefused, RunStopped, TokenUnavailable, TransientError
from pipeline.retry import RetryPolicy, _FailureLike, call_with_retries
from pipeline.settings import Settings, shown_url

log = structlog.get_logger(__name__)

#: Statuses after which nothing was created and the same request may be sent again. 502/504 are not here: a
#: gateway may give up while the server goes on creating the job, so they are looked up like a lost answer.
TRANSIENT_STATUSES = frozenset({429, 503})
#: Statuses that are final for the row: the API read the job and refused it.
REJECTED_STATUSES = frozenset({400, 403, 409, 413, 422})
#: Statuses that say the endpoint itself is wrong (base URL, API version): a configuration problem for every row.
ENDPOINT_STATUSES = frozenset({404, 405, 415})
#: Refresh the token this many seconds before it expires (or at 10% of its lifetime if that is shorter).
TOKEN_MARGIN_S = 60.0
JSON_HEADERS = {"Content-Type": "application/json"}
#: How much of a non-JSON error body (a gateway's HTML page) is kept in the problem details.
EXCERPT_CHARS = 200


class Kind(StrEnum):
    CREATED = "created"
    REJECTED = "rejected"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"
    AUTH = "auth"  # 401 after a refresh, or the token endpoint failing: stop the run
    ENDPOINT = "endpoint"  # 404/405/415 from POST /jobs: the base URL is wrong; stop the run


@dataclass(frozen=True, slots=True)
class Answer(_FailureLike):
    """The classified outcome of one create request. As a failure (`pipeline.retry`): a transient answer may be
    sent again; an unknown one may have created the job (looked up, never resent blindly)."""

    kind: Kind
    status: int | None = None  # HTTP status, None when no answer came back
    job_id: int | None = None
    problem: dict[str, Any] | None = None  # RFC 9457 problem details (always a dict when not created)
    retry_after: float | None = None
    latency_s: float = 0.0
    timed_out: bool = False  # no answer within the read timeout: the server may still be creating the job

    @property
    def retryable(self) -> bool:
        return self.kind == Kind.TRANSIENT

    @property
    def may_have_created(self) -> bool:
        return self.kind in (Kind.CREATED, Kind.UNKNOWN)


@dataclass(frozen=True, slots=True)
class FoundJob:
    """A job found by reference: enough to tell the same job from a different one with the same reference."""

    id: int
    type_id: int | None
    contact_id: int | None


@dataclass
class ClientOptions:
    transport: str = "aiohttp"  # "aiohttp" (httpx API over aiohttp's pool) or "httpx" (httpx's own pool)
    max_connections: int = 32
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    extra_headers: dict[str, str] = field(default_factory=dict)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds form; an HTTP date is turned into seconds from now)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def problem_from_response(response: httpx.Response) -> dict[str, Any]:
    """Problem details from any error answer: the JSON body when it is one, else status + a short excerpt."""
    text = response.text
    content_type = response.headers.get("content-type", "")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            body.setdefault("status", response.status_code)
            if not body.get("title"):
                body["title"] = response.reason_phrase or f"HTTP {response.status_code}"
            return body
    excerpt = " ".join(text.split())[:EXCERPT_CHARS]
    return {
        "type": None,
        "title": response.reason_phrase or f"HTTP {response.status_code}",
        "status": response.status_code,
        "detail": f"non-JSON answer ({content_type or 'no content type'}): {excerpt}" if excerpt else None,
    }


def request_was_not_sent(exc: httpx.HTTPError) -> bool:
    """True only when we know the request never reached the server (safe to send again).

    httpx-aiohttp maps *every* aiohttp.ClientConnectionError — including ServerDisconnectedError, which is a
    connection dropped after the request was written — to httpx.ConnectTimeout. Trusting the httpx type would
    resend jobs that may exist, so the aiohttp cause decides when there is one.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError):
        return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _cause_name(exc: Exception) -> str:
    """The real error behind an httpx exception (httpx-aiohttp names a refused connection ConnectTimeout)."""
    cause = exc.__cause__ or exc
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _connection_problem(exc: Exception, sent: bool) -> dict[str, Any]:
    what = type(exc.__cause__ or exc).__name__
    detail = str(exc.__cause__ or exc) or what
    title = "Connection failed before the request was sent" if not sent else "Answer lost after the request was sent"
    return {"type": None, "title": title, "status": None, "detail": f"{what}: {detail}"[:EXCERPT_CHARS]}


#: Tokens this process was issued, by (token URL, client id, the secret's digest): the pre-flight's fetch of the
#: tenant's reference data and the submit that follows use separate clients, and the second need not wait one more
#: round trip for a token the first already holds. In memory only; a token the API refuses is replaced on its 401.
_ISSUED: dict[tuple[str, str, str], tuple[str, float]] = {}


class _Silent(TransientError):
    """The token endpoint's host did not answer a connect within the connect timeout (e.g. a port that accepts TCP
    but never answers the TLS handshake): not tried again, since the next try would wait as long for the same
    silence (`--timeout` in all)."""

    retryable = False


class _SilentEndpoint(TokenUnavailable):
    """A token endpoint found silent: shared by every client of this process for a while (see _SILENT)."""


#: Token endpoints found silent (by the same key as _ISSUED), with when: the reference-data fetch that runs first
#: and the submit that follows share the wait instead of each timing out in turn.
_SILENT: dict[tuple[str, str, str], tuple[_SilentEndpoint, float]] = {}


def _timed_out_connecting(exc: Exception) -> bool:
    """A connect timeout that really was one (httpx-aiohttp also names a dropped connection ConnectTimeout)."""
    return isinstance(exc, httpx.ConnectTimeout) and "timeout" in type(exc.__cause__ or exc).__name__.lower()


class TokenSource:
    """Client-credentials tokens, shared by all workers: one refresh at a time, renewed before expiry."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._settings = settings
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._failure: TokenUnavailable | None = None  # the last fetch's failure, shared with waiting workers
        self._failed_at = 0.0
        self.refreshes = 0
        self.attempts = 5  # tries per token fetch (a best-effort caller, like the pre-flight, may want fewer)
        secret = hashlib.sha256(settings.client_secret.reveal().encode()).hexdigest()
        self._key = (settings.token_url, settings.client_id, secret)
        self._token, self._expires_at = _ISSUED.get(self._key, (None, 0.0))

    async def get(self) -> str:
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                await self._fetch_once()
            assert self._token is not None
            return self._token

    async def refresh_after_401(self, rejected: str) -> str:
        """Get a new token unless another worker already replaced the one the server refused."""
        async with self._lock:
            if self._token == rejected or self._token is None:
                await self._fetch_once()
            assert self._token is not None
            return self._token

    async def _fetch_once(self) -> None:
        """Fetch, unless a fetch (with its own retries) just failed: then every waiting worker gets that failure
        at once instead of each retrying the unreachable endpoint in turn."""
        if self._failure is not None and time.monotonic() - self._failed_at < 10.0:
            raise self._failure
        silent = _SILENT.get(self._key)  # (another client of this process just found the endpoint silent)
        if silent is not None and time.monotonic() - silent[1] < 10.0:
            raise silent[0]
        try:
            await self._fetch()
        except TokenUnavailable as exc:
            self._failure, self._failed_at = exc, time.monotonic()
            if isinstance(exc, _SilentEndpoint):
                _SILENT[self._key] = (exc, self._failed_at)
            raise
        self._failure = None

    async def _fetch(self) -> None:
        """One token, tried `attempts` times through the retry policy (5xx, 429, network); a refusal stops."""
        url = shown_url(self._settings.token_url)  # (shown without a query: see settings.shown_url)
        policy = RetryPolicy(attempts=self.attempts, base_s=0.5, max_s=8.0, max_wait_s=30.0)
        try:
            response = await call_with_retries(self._post_token, policy)
        except TransientError as exc:
            if exc.status is None:
                raise (_SilentEndpoint if isinstance(exc, _Silent) else TokenUnavailable)(
                    f"cannot reach the token endpoint {url}: {exc}; check BIGCHANGE_TOKEN_URL and the network, "
                    "then run again"
                ) from None
            raise TokenUnavailable(
                f"the token endpoint {url} answered {exc.status} {self.attempts} times; try again later",
                status=exc.status,
            ) from None
        if response.status_code != 200:
            problem = problem_from_response(response)
            secret = self._settings.client_secret.reveal() or "\0"
            title = str(problem.get("title") or "").replace(secret, "***")  # (an endpoint that echoes the form)
            raise AuthRefused(
                f"the token endpoint {url} refused the client credentials ({response.status_code} "
                f"{title}); check BIGCHANGE_CLIENT_ID and BIGCHANGE_CLIENT_SECRET"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise AuthRefused(
                f"the token endpoint {url} answered 200 without access_token/expires_in; "
                "check BIGCHANGE_TOKEN_URL points at the OAuth token endpoint"
            ) from None
        margin = min(TOKEN_MARGIN_S, lifetime * 0.1)
        self._token = token
        self._expires_at = time.monotonic() + max(0.0, lifetime - margin)
        _ISSUED[self._key] = (token, self._expires_at)
        self.refreshes += 1
        log.info("token_refreshed", expires_in=lifetime)

    async def _post_token(self) -> httpx.Response:
        """One POST to the token endpoint; a failure a retry may cure is a TransientError (a token request
        creates nothing)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.reveal(),
        }
        url = self._settings.token_url
        try:
            response = await self._http.post(url, data=form)
        except httpx.HTTPError as exc:
            cause = _cause_name(exc).replace(url, shown_url(url))  # (aiohttp names the URL, query included)
            raise (_Silent if _timed_out_connecting(exc) else TransientError)(cause) from None
        if response.status_code in TRANSIENT_STATUSES or response.status_code >= 500:
            raise TransientError(
                f"token endpoint answered {response.status_code}",
                status=response.status_code,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return response


class ApiClient:
    """One shared connection pool to the API. Use as `async with ApiClient(settings) as api:`."""

    def __init__(self, settings: Settings, options: ClientOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ClientOptions()
        opts = self.options
        limits = httpx.Limits(max_connections=opts.max_connections, max_keepalive_connections=opts.max_connections)
        # pool=None: waiting for a free connection is not a timeout (a PoolTimeout would look like "maybe sent").
        timeout = httpx.Timeout(
            connect=min(opts.connect_timeout_s, settings.connect_timeout_s),  # (--timeout bounds connects too)
            read=opts.read_timeout_s,
            write=opts.write_timeout_s,
            pool=None,
        )
        transport: httpx.AsyncBaseTransport
        if opts.transport == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        elif opts.transport == "httpx":
            transport = httpx.AsyncHTTPTransport(limits=limits)
        else:
            raise ValueError(f"unknown transport {opts.transport!r}; use 'aiohttp' or 'httpx'")
        headers = {
            "Customer-Id": str(settings.customer_id),
            "Accept": "application/json",
            "User-Agent": f"jobimport/{__version__}",
            "Accept-Encoding": "gzip, deflate",  # what httpx decodes without optional packages
            **opts.extra_headers,
        }
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers)
        # API calls go straight to the transport (httpx's public transport API) with these headers and timeouts:
        # the client's per-request machinery (cookie jar, redirects, auth flow, header merging) is work we never
        # use, and measured here it was half the client's CPU per create (0.36-0.49 ms against 0.19-0.22 ms).
        self._transport = transport
        self._headers = headers
        self._extensions = {"timeout": timeout.as_dict()}
        self.tokens = TokenSource(self._http, settings)
        self.jobs_url = f"{settings.base_url}/jobs"
        self._jobs_url = httpx.URL(self.jobs_url)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _send(
        self,
        method: str,
        url: str | httpx.URL,
        headers: dict[str, str],
        content: bytes | None = None,
        params: list[tuple[str, str | int]] | None = None,
    ) -> httpx.Response:
        """One request through the transport, its body read and the connection given back to the pool."""
        query = None if params is None else httpx.QueryParams(tuple(params))
        request = httpx.Request(
            method, url, params=query, headers=headers, content=content, extensions=self._extensions
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def _authorised(
        self,
        method: str,
        url: str | httpx.URL,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        params: list[tuple[str, str | int]] | None = None,
    ) -> httpx.Response:
        """Send with a bearer token; on a 401, refresh once and send again (a 401 means nothing was created)."""
        token = await self.tokens.get()
        sent_headers = {**self._headers, **(headers or {}), "Authorization": f"Bearer {token}"}
        response = await self._send(method, url, sent_headers, content, params)
        if response.status_code == 401:
            token = await self.tokens.refresh_after_401(token)
            sent_headers["Authorization"] = f"Bearer {token}"
            response = await self._send(method, url, sent_headers, content, params)
        return response

    async def create_job(self, body: bytes) -> Answer:
        """POST /jobs with an already-serialised JSON body, classified into an Answer. Never raises for HTTP."""
        started = time.perf_counter()
        try:
            response = await self._authorised("POST", self._jobs_url, JSON_HEADERS, content=body)
        except httpx.HTTPError as exc:
            sent = not request_was_not_sent(exc)
            kind = Kind.UNKNOWN if sent else Kind.TRANSIENT
            timed_out = isinstance(exc.__cause__ or exc, TimeoutError | httpx.ReadTimeout | httpx.WriteTimeout)
            return Answer(
                kind,
                problem=_connection_problem(exc, sent),
                latency_s=time.perf_counter() - started,
                timed_out=sent and timed_out,
            )
        latency = time.perf_counter() - started
        status = response.status_code
        if status == 201:
            try:
                job_id = int(response.json()["id"])
            except (ValueError, KeyError, TypeError):
                # Created, but we cannot read the id: the reference lookup will find it.
                return Answer(Kind.UNKNOWN, status, problem=problem_from_response(response), latency_s=latency)
            return Answer(Kind.CREATED, status, job_id=job_id, latency_s=latency)
        problem = problem_from_response(response)
        if status == 401:
            return Answer(Kind.AUTH, status, problem=problem, latency_s=latency)
        if status in TRANSIENT_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return Answer(Kind.TRANSIENT, status, problem=problem, retry_after=retry_after, latency_s=latency)
        if status in ENDPOINT_STATUSES:
            return Answer(Kind.ENDPOINT, status, problem=problem, latency_s=latency)
        if status in REJECTED_STATUSES:
            return Answer(Kind.REJECTED, status, problem=problem, latency_s=latency)
        # 500 and anything unexpected: the job may or may not exist.
        return Answer(Kind.UNKNOWN, status, problem=problem, latency_s=latency)

    async def find_jobs(self, references: list[str]) -> dict[str, int]:
        """Look jobs up by reference (≤ 50 per call, paged). Returns reference → job id (the lowest id if several).

        Raises TransientError when the look-up could not be made; the caller keeps the rows unresolved.
        """
        found = await self.find_job_summaries(references)
        return {ref: min(job.id for job in jobs) for ref, jobs in found.items()}

    async def find_job_summaries(self, references: list[str]) -> dict[str, list[FoundJob]]:
        """Every job with one of these references (≤ 50 per call, paged), by reference, lowest id first."""
        if not references:
            return {}
        if len(references) > 50:
            raise ValueError("at most 50 references per look-up")
        found: dict[str, list[FoundJob]] = {}
        page = 1
        while True:
            params: list[tuple[str, str | int]] = [("reference", r) for r in references]
            params += [("pageNumber", page), ("pageSize", 1000)]
            try:
                response = await self._authorised("GET", self._jobs_url, params=params)
            except httpx.HTTPError as exc:
                raise TransientError(f"job look-up by reference failed: {_cause_name(exc)}") from None
            if response.status_code != 200:
                problem = problem_from_response(response)
                if response.status_code in (401, 403):
                    raise AuthRefused(
                        f"the API answered {response.status_code} ({problem.get('title')}) to the job look-up by "
                        f"reference (GET {self.jobs_url}); check BIGCHANGE_CUSTOMER_ID and the API key's scopes "
                        "(jobs:read, to look references up before sending and after lost answers)"
                    )
                if response.status_code in (404, 405):
                    raise AuthRefused(
                        f"the API answered {response.status_code} {problem.get('title')} to GET {self.jobs_url}: "
                        "that is not the jobs endpoint; check BIGCHANGE_BASE_URL (e.g. https://api.bigchange.com/v1)"
                    )
                raise TransientError(
                    f"job look-up by reference answered {response.status_code}",
                    status=response.status_code,
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            try:
                body = response.json()
                items = body.get("items") or []
                for item in items:
                    ref = item.get("reference")
                    if ref is not None and item.get("id") is not None:
                        type_id, contact_id = item.get("typeId"), item.get("contactId")
                        found.setdefault(ref, []).append(
                            FoundJob(
                                int(item["id"]),
                                None if type_id is None else int(type_id),
                                None if contact_id is None else int(contact_id),
                            )
                        )
                last_page = int(body.get("pageItemCount") or len(items)) < int(body.get("pageSize") or 1000)
            except (ValueError, TypeError, AttributeError):
                # A proxy's HTML page or a changed shape: we know nothing, so the rows stay unresolved.
                excerpt = " ".join(response.text.split())[:EXCERPT_CHARS]
                raise TransientError(f"job look-up answered 200 with an unreadable body: {excerpt}") from None
            if last_page:
                for jobs in found.values():
                    jobs.sort(key=lambda job: job.id)
                return found
            page += 1

    async def get_page(self, path: str, params: list[tuple[str, str | int]]) -> tuple[dict[str, Any], float]:
        """GET one page of a list endpoint (`/jobTypes`, `/contacts`, `/persons`): its JSON body and latency.

        Raises AuthRefused on 401/403 (a scope is missing), TransientError(status, retry_after) on 429/5xx and
        network errors (the caller may retry: a GET changes nothing), RunStopped on any other status.
        """
        url = f"{self.settings.base_url}{path}"
        started = time.perf_counter()
        try:
            response = await self._authorised("GET", url, params=params)
        except httpx.HTTPError as exc:
            raise TransientError(f"GET {path} failed: {_cause_name(exc)}") from None
        latency = time.perf_counter() - started
        status = response.status_code
        if status == 200:
            try:
                body = response.json()
                if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                    raise ValueError("no items")
            except ValueError:
                excerpt = " ".join(response.text.split())[:EXCERPT_CHARS]
                raise TransientError(f"GET {path} answered 200 with an unreadable body: {excerpt}") from None
            return body, latency
        problem = problem_from_response(response)
        if status in (401, 403):
            raise AuthRefused(f"the API refused GET {path} ({status} {problem.get('title') or ''})")
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientError(
                f"GET {path} answered {status}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        raise RunStopped(
            f"GET {url} answered {status} {problem.get('title') or ''}: {problem.get('detail') or ''}".rstrip(": ")
            + "; check BIGCHANGE_BASE_URL"
        )
