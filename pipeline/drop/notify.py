"""Telling someone: a JSON summary of a filed file, POSTed to a webhook and/or piped into a command.

The JSON has `file`, `outcome` (done / attention / failed / processing), `exit_code`, `counts`, `rows`,
`run_id`, `reports`, `filed_to`, `problems` (the top messages) and `reason`, plus `text`: one readable
paragraph, the field Slack and Microsoft Teams incoming webhooks display. Everything in it that comes from a
file (its name, cell values inside the top problems, the reason) is quoted by `chat_quote`: control characters
shown as `[U+001B]`, `&`, `<` and `>` as HTML entities (Slack reads `<!channel>` as an alert and `<url|label>`
as a link; Teams renders entities too), inside a code span (no markdown link, mention or emphasis in either).
A notification that fails is reported and retried once, within WEBHOOK_BUDGET_S in all; it never changes the
outcome of the import. The webhook URL is a secret (Slack's carry a token): messages name its host only.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

RETRY_PAUSE_S = 2.0
#: what a webhook may cost a pass, both attempts and the pause between them (a webhook that hangs, drips or
#: refuses must not hold the night's files)
WEBHOOK_BUDGET_S = 10.0


@dataclass(frozen=True, slots=True)
class Notifier:
    webhook: str | None = None
    command: str | None = None
    notify_all: bool = False
    timeout_s: float = 10.0

    @property
    def active(self) -> bool:
        return bool(self.webhook or self.command)

    def wanted(self, outcome: str) -> bool:
        return self.active and (self.notify_all or outcome != "done")

    def send(self, message: dict[str, Any], on_failure: Callable[[str, str], None]) -> None:
        """Deliver `message` to each target, retrying once; report each final failure as (target, reason)."""
        if self.webhook:
            host = _host(self.webhook)
            deadline = time.monotonic() + min(self.timeout_s, WEBHOOK_BUDGET_S)
            _twice(lambda: self._post(message, deadline), lambda why: on_failure(f"webhook {host}", why), deadline)
        if self.command:
            _twice(lambda: self._run(message), lambda why: on_failure("notify command", why))

    def _post(self, message: dict[str, Any], deadline: float) -> str | None:
        """One POST, given up at `deadline` whatever the server does (httpx's timeouts are per read: a server
        dripping a byte a second would never time out), in a daemon thread left behind if it overruns."""
        assert self.webhook is not None
        webhook = self.webhook
        left = deadline - time.monotonic()
        if left <= 0:
            return "no time left"
        outcome: list[str | None] = []

        def post() -> None:
            try:
                answer = httpx.post(webhook, json=message, timeout=left, follow_redirects=True)
            except httpx.HTTPError as exc:
                outcome.append(f"{type(exc).__name__}: {exc}".replace(webhook, _host(webhook)))
                return
            except Exception as exc:  # (never a traceback from a notification)
                outcome.append(f"{type(exc).__name__}".replace(webhook, _host(webhook)))
                return
            if answer.is_success:
                outcome.append(None)
            else:
                outcome.append(f"answered {answer.status_code} {answer.text[:200]!r}")

        worker = threading.Thread(target=post, name="jobimport-webhook", daemon=True)
        worker.start()
        worker.join(left)
        if not outcome:
            return f"no answer within {left:.0f} s"
        return outcome[0]

    def _run(self, message: dict[str, Any]) -> str | None:
        import json

        assert self.command is not None
        try:
            done = subprocess.run(  # a shell command line, like cron's: `mail -s "…" ops@example.com`
                self.command,
                shell=True,
                input=json.dumps(message, ensure_ascii=False).encode("utf-8"),
                capture_output=True,
                timeout=max(30.0, self.timeout_s),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{type(exc).__name__}: {exc}"
        if done.returncode == 0:
            return None
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return f"exit {done.returncode}: {last[0][:200]}"


def _twice(attempt: Callable[[], str | None], failed: Callable[[str], None], deadline: float | None = None) -> None:
    reason = attempt()
    if reason is None:
        return
    if deadline is not None and deadline - time.monotonic() < RETRY_PAUSE_S + 1.0:
        failed(reason)  # (no time left for a useful second try)
        return
    time.sleep(RETRY_PAUSE_S)
    reason = attempt()
    if reason is not None:
        failed(reason)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


def chat_quote(value: object) -> str:
    """`value` safe inside a chat message: control characters as `[U+001B]` (a newline included), `&`, `<`, `>`
    as entities (what Slack asks for; Teams renders them too), backticks replaced by `ˋ` (U+02CB), and the
    whole inside a code span, where neither Slack nor Teams reads links, mentions or emphasis."""
    text = str(value)
    text = "".join(f"[U+{ord(c):04X}]" if _control(c) else c for c in text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "\u02cb")
    return f"`{text}`"


def _control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029, 0xFFFE, 0xFFFF)


def message_text(message: dict[str, Any]) -> str:
    """The `text` of a notification: what happened to which file, and where to look. What comes from a file is
    quoted (`chat_quote`); the rest is our own words."""
    counts = ", ".join(f"{n} {s}" for s, n in (message.get("counts") or {}).items() if n)
    head = {
        "done": "imported",
        "attention": "imported; some rows need attention",
        "failed": "could not be imported",
        "processing": "stopped; it stays in processing/ and the next pass resumes it",
    }.get(str(message.get("outcome")), str(message.get("outcome")))
    if message.get("duplicate_of"):
        head = "not imported: the same content was imported before"
    parts = [f"jobimport drop: {chat_quote(message.get('file'))} {head} (exit {message.get('exit_code')})."]
    if counts:
        parts.append(f"Rows: {counts}.")
    if message.get("reason"):
        parts.append(f"Reason: {chat_quote(message['reason'])}.")
    problems = message.get("problems") or []
    if problems:
        parts.append("Top problems: " + "; ".join(chat_quote(p) for p in problems[:3]) + ".")
    if message.get("filed_to"):
        parts.append(f"File: {chat_quote(message['filed_to'])}.")
    if message.get("reports"):
        parts.append(f"Reports: {chat_quote(message['reports'])}.")
    return " ".join(parts)
