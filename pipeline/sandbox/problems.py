"""Response bodies of the sandbox: JSON, RFC 9457 problem details (ASP.NET flavour, with a `traceId`) and the
non-JSON pages a gateway answers with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web

PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    422: "https://tools.ietf.org/html/rfc4918#section-11.2",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "One or more validation errors occurred.",
    429: "Too Many Requests",
    500: "An error occurred while processing your request.",
    503: "Service Unavailable",
}

GATEWAY_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
GATEWAY_503 = b"Service Unavailable: the server is temporarily unable to handle the request. Try again later.\r\n"


def trace_id() -> str:
    """A W3C trace-parent like the `traceId` ASP.NET puts in problem details."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def problem(
    status: int,
    detail: str | None,
    instance: str,
    *,
    title: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES.get(status, "about:blank"),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = dict(errors)
    body.update(extensions)
    body["traceId"] = trace_id()
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/problem+json",
        charset="utf-8",
        headers=headers,
    )


def validation_problem(instance: str, errors: Mapping[str, list[str]], detail: str | None = None) -> web.Response:
    return problem(422, detail or "See the errors property for details.", instance, errors=errors)


def gateway_502() -> web.Response:
    return web.Response(body=GATEWAY_502, status=502, content_type="text/html")


def unavailable_503(retry_after: int) -> web.Response:
    return web.Response(
        body=GATEWAY_503, status=503, content_type="text/plain", headers={"Retry-After": str(retry_after)}
    )
