"""OAuth 2.0 client credentials for the sandbox: POST /auth/tokens, and the bearer-token and Customer-Id checks
of every /v1 call.

Token endpoint errors follow RFC 6749 §5.2 in problem-details form (`error`, `error_description` members
added): credentials in the form body → 400 `invalid_client`; credentials in an HTTP Basic header → 401 with
`WWW-Authenticate: Basic`; a missing parameter → 400 `invalid_request`; another grant type → 400
`unsupported_grant_type`. Tokens and secrets never appear in answers or logs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time

from aiohttp import web

from pipeline.sandbox.problems import json_response, problem

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class TokenIssuer:
    def __init__(self, client_id: str, client_secret: str, customer_id: int, others: tuple[int, ...] = ()) -> None:
        self.client_id = client_id
        self._secret = client_secret.encode()
        self.customer_id = customer_id
        self.customers = frozenset((customer_id, *others))  # every tenant these credentials may reach
        self._customer_text = str(customer_id)
        self.tokens: dict[str, float] = {}  # token → monotonic expiry
        self.issued = 0

    def _oauth_error(self, status: int, error: str, description: str, instance: str) -> web.Response:
        headers = {"WWW-Authenticate": 'Basic realm="bigchange"'} if status == 401 else None
        return problem(status, description, instance, headers=headers, error=error, error_description=description)

    async def token(self, request: web.Request, lifetime: int) -> web.Response:
        """POST /auth/tokens."""
        try:
            form = await request.post() if request.content_type in FORM_TYPES else {}
        except ValueError:  # a multipart body without its boundary, a malformed part: not a form we can read
            return self._oauth_error(
                400, "invalid_request", "The form body cannot be read: check its Content-Type.", request.path
            )
        grant_type = form.get("grant_type")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        basic = False
        header = request.headers.get("Authorization", "")
        if client_id is None and header[:6].lower() == "basic ":
            try:
                client_id, _, client_secret = base64.b64decode(header[6:].strip()).decode().partition(":")
                basic = True
            except (binascii.Error, UnicodeDecodeError):
                return self._oauth_error(
                    400, "invalid_request", "The Basic authorization header is malformed.", request.path
                )
        missing = [
            name
            for name, value in (("grant_type", grant_type), ("client_id", client_id), ("client_secret", client_secret))
            if not isinstance(value, str) or not value
        ]
        if missing:
            return self._oauth_error(
                400,
                "invalid_request",
                f"Missing form parameter(s): {', '.join(missing)}. Send application/x-www-form-urlencoded "
                "grant_type=client_credentials, client_id and client_secret.",
                request.path,
            )
        if grant_type != "client_credentials":
            return self._oauth_error(
                400, "unsupported_grant_type", "Only grant_type=client_credentials is supported.", request.path
            )
        assert isinstance(client_id, str) and isinstance(client_secret, str)
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._secret)
        if not (id_ok and secret_ok):
            return self._oauth_error(
                401 if basic else 400,
                "invalid_client",
                "Client authentication failed: unknown client id or wrong secret.",
                request.path,
            )
        now = time.monotonic()
        if len(self.tokens) > 10_000:
            self.tokens = {t: expiry for t, expiry in self.tokens.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = now + lifetime
        self.issued += 1
        return json_response(
            {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def authorize(self, request: web.Request) -> web.Response | None:
        """None when the bearer token and the tenant are accepted, else the 401/403 answer."""
        header = request.headers.get("Authorization")
        if header is None or header[:7].lower() != "bearer ":
            return problem(
                401,
                "An access token is required: send 'Authorization: Bearer <token>' with a token from "
                "POST /auth/tokens.",
                request.path,
                headers={"WWW-Authenticate": "Bearer"},
            )
        expiry = self.tokens.get(header[7:].strip())
        if expiry is None or expiry <= time.monotonic():
            why = "The access token is not valid." if expiry is None else "The access token expired."
            return problem(
                401,
                why + " Request a new one from POST /auth/tokens.",
                request.path,
                headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{why}"'},
            )
        customer = request.headers.get("Customer-Id")
        if customer != self._customer_text:
            if customer is None:
                return problem(403, "The Customer-Id header is required on every call.", request.path)
            try:
                accepted = int(customer.strip()) in self.customers
            except ValueError:
                accepted = False
            if not accepted:
                shown = customer if len(customer) <= 30 else customer[:27] + "..."
                return problem(403, f"This client may not access customer '{shown}'.", request.path)
        return None

    def reset(self) -> None:
        self.issued = 0
