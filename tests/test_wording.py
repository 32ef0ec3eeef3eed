"""Issue 22, finding 8: what a person reads — check codes in words, "1 row", an empty persons pull explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.report.html import _rows_n, check_words
from pipeline.state import TenantIdentity
from pipeline.tenant.cli import _print
from pipeline.tenant.refdata import PullStats


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("duplicate_reference", "reference used twice"),
        ("error_cell", "error cell (#N/A…)"),
        ("api_422", "refused by the API (422)"),
        ("max_length", "too long"),
        ("something_new", "something new"),
    ],
)
def test_check_codes_in_words(code: str, words: str) -> None:
    assert check_words(code) == words


def test_one_row_is_singular() -> None:
    assert (_rows_n(1), _rows_n(2), _rows_n(1234)) == ("1 row", "2 rows", "1,234 rows")


def test_a_pull_without_input_says_why_no_person(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    class Data:
        identity = TenantIdentity.of("http://127.0.0.1:8765/v1", 1001)
        fetched_at_iso = "2024-12-05T10:00:00+00:00"
        job_types = [{}] * 3
        contacts = [{}] * 2
        persons = ()
        persons_scope: frozenset[int] = frozenset()

    _print(Data(), PullStats(), tmp_path)  # type: ignore[arg-type]
    line = capsys.readouterr().out.splitlines()[1]
    assert line == (
        "  3 job types, 2 contacts, no persons fetched (INPUT --mapping: those of the contacts a file uses; "
        "--all-persons: all)"
    )
