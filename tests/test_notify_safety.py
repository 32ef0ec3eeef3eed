"""Notifications are safe to post into a chat: what comes from a file is quoted (no @channel, no disguised link,
no markdown, no control character), and a webhook that hangs, drips or refuses costs at most 10 s in all."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.drop.notify import WEBHOOK_BUDGET_S, Notifier, chat_quote, message_text

HOSTILE = {
    "file": "jobs <!channel> <https://evil.example/pay|Invoice>.csv",
    "outcome": "attention",
    "exit_code": 1,
    "counts": {"created": 3, "invalid": 1},
    "problems": [
        "Column 'Notes' (row 2): '[click here](https://evil.example) *urgent* `x` & <@U123>\x1b[31m\nsecond line' "
        "is longer than 500 characters"
    ],
    "reason": None,
    "filed_to": "/srv/drop/attention/2026-12-06/jobs.csv",
    "reports": "/srv/drop/reports/20261206T010203Z-ab12",
}

#: the text before issue 21 (the same message, file values pasted as they were)
BEFORE = (
    "jobimport drop: jobs <!channel> <https://evil.example/pay|Invoice>.csv imported; some rows need attention "
    "(exit 1). Rows: 3 created, 1 invalid. Top problems: Column 'Notes' (row 2): '[click here](https://evil.example) "
    "*urgent* `x` & <@U123>\x1b[31m\nsecond line' is longer than 500 characters. "
    "File: /srv/drop/attention/2026-12-06/jobs.csv. Reports: /srv/drop/reports/20261206T010203Z-ab12."
)


def test_the_slack_text_quotes_everything_that_came_from_a_file() -> None:
    text = message_text(HOSTILE)
    print(f"\nbefore: {json.dumps({'text': BEFORE})}\nafter:  {json.dumps({'text': text})}")
    assert text == (
        "jobimport drop: `jobs &lt;!channel&gt; &lt;https://evil.example/pay|Invoice&gt;.csv` imported; some rows need "
        "attention (exit 1). Rows: 3 created, 1 invalid. Top problems: `Column 'Notes' (row 2): '[click here]"
        "(https://evil.example) *urgent* \u02cbx\u02cb &amp; &lt;@U123&gt;[U+001B][31m[U+000A]second line' is longer "
        "than 500 characters`. File: `/srv/drop/attention/2026-12-06/jobs.csv`. "
        "Reports: `/srv/drop/reports/20261206T010203Z-ab12`."
    )
    # Slack: no raw <, > (mentions, links) and every & an entity; no control character; one code span per value
    assert "<" not in text and ">" not in text and "\x1b" not in text and "\n" not in text
    assert text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0
    assert text.count("`") % 2 == 0


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("<!here>", "`&lt;!here&gt;`"),
        ("a & b", "`a &amp; b`"),
        ("[x](https://e.example)", "`[x](https://e.example)`"),  # inside a code span: no link in Teams/markdown
        ("`code` break", "`\u02cbcode\u02cb break`"),  # a backtick cannot end the span
        ("tab\there\u2028", "`tab[U+0009]here[U+2028]`"),
        ("&lt;", "`&amp;lt;`"),  # an entity in a value stays text
    ],
)
def test_chat_quote(value: str, quoted: str) -> None:
    assert chat_quote(value) == quoted


@pytest.fixture
def hanging_webhook() -> Iterator[str]:
    """A server that accepts the connection and the request, then never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/T000/SECRETPATH"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def dripping_webhook() -> Iterator[str]:
    """A server that answers one header byte every half second, forever (each read is quick: no read timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"X")
                except OSError:
                    return
                time.sleep(0.5)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stop.set()
    listener.close()


def _refused_url() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}/hook"


@pytest.mark.parametrize("kind", ["hangs", "drips", "refuses"])
def test_a_webhook_that_hangs_drips_or_refuses_costs_at_most_10_s_in_all(
    kind: str, hanging_webhook: str, dripping_webhook: str
) -> None:
    url = {"hangs": hanging_webhook, "drips": dripping_webhook, "refuses": _refused_url()}[kind]
    failures: list[tuple[str, str]] = []
    started = time.monotonic()
    Notifier(webhook=url).send({"text": "x"}, lambda target, why: failures.append((target, why)))
    elapsed = time.monotonic() - started
    assert elapsed <= WEBHOOK_BUDGET_S + 0.5, elapsed
    assert len(failures) == 1 and failures[0][0].startswith("webhook http://127.0.0.1:")
    assert "SECRETPATH" not in repr(failures) and "/hook" not in failures[0][0]
    if kind == "refuses":
        assert elapsed < 5  # refused twice, 2 s apart
