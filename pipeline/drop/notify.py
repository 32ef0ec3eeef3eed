"""Telling someone: a JSON summary of a filed file, POSTed to a webhook and/or piped into a command.

The JSON has `file`, `outcome` (done / attention / failed / processing), `exit_code`, `counts`, `rows`,
`run_id`, `reports`, `filed_to`, `problems` (the top messages) and `reason`, plus `text`: one readable
paragraph, the field Slack and Microsoft Teams incoming webhooks display. A notification that fails is
reported and retried once; it never changes the outcome of the import. The webhook URL is a secret (Slack's
carry a token): messages name its host only.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

RETRY_PAUSE_S = 2.0


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
            _twice(lambda: self._post(message), lambda why: on_failure(f"webhook {host}", why))
        if self.command:
            _twice(lambda: self._run(message), lambda why: on_failure("notify command", why))

    def _post(self, message: dict[str, Any]) -> str | None:
        assert self.webhook is not None
        try:
            answer = httpx.post(self.webhook, json=message, timeout=self.timeout_s, follow_redirects=True)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".replace(self.webhook, _host(self.webhook))
        if answer.is_success:
            return None
        return f"answered {answer.status_code} {answer.text[:200]!r}"

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


def _twice(attempt: Callable[[], str | None], failed: Callable[[str], None]) -> None:
    reason = attempt()
    if reason is None:
        return
    time.sleep(RETRY_PAUSE_S)
    reason = attempt()
    if reason is not None:
        failed(reason)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


def message_text(message: dict[str, Any]) -> str:
    """The `text` of a notification: what happened to which file, and where to look."""
    counts = ", ".join(f"{n} {s}" for s, n in (message.get("counts") or {}).items() if n)
    head = {
        "done": "imported",
        "attention": "imported; some rows need attention",
        "failed": "could not be imported",
        "processing": "stopped; it stays in processing/ and the next pass resumes it",
    }.get(str(message.get("outcome")), str(message.get("outcome")))
    if message.get("duplicate_of"):
        head = "not imported: the same content was imported before"
    parts = [f"jobimport drop: {message.get('file')} {head} (exit {message.get('exit_code')})."]
    if counts:
        parts.append(f"Rows: {counts}.")
    if message.get("reason"):
        reason = str(message["reason"])
        parts.append(reason if reason.endswith(".") else reason + ".")
    problems = message.get("problems") or []
    if problems:
        parts.append("Top problems: " + "; ".join(problems[:3]) + ".")
    if message.get("filed_to"):
        parts.append(f"File: {message['filed_to']}.")
    if message.get("reports"):
        parts.append(f"Reports: {message['reports']}.")
    return " ".join(parts)
