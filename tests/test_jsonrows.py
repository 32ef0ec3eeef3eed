"""Tests of the C encoder behind the plan stage (pipeline/_jsonrows.c): what the polars query writes, on the frames
polars really hands it (many chunks, sliced, long rows, short rows), and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_payload import CF, make_mapping

from pipeline import _jsonrows
from pipeline import payload as payload_module
from pipeline.mapping import Mapping
from pipeline.model import API_FIELDS, INT_FIELDS


@pytest.fixture
def mapping(tmp_path: Path) -> Mapping:
    """test_payload's mapping: every API field from a column, and custom fields CF in that order."""
    return make_mapping(tmp_path)


def job_frame(n: int, *, offset: int = 0, description: pl.Expr | None = None) -> pl.DataFrame:
    """n rows of every API field and both custom fields, with nulls, escapes and non-ASCII text spread about."""
    i = pl.int_range(offset, offset + n, dtype=pl.Int64)
    notes = pl.lit(pl.Series(['say "hi"', "a\\b", "line\nbreak", "é€😀", "tab\there", "\x01", None]))
    text = {f: pl.String for f in API_FIELDS if f not in INT_FIELDS}
    return pl.select(
        (i + 1).alias("typeId"),
        pl.when(i % 5 == 0).then(None).otherwise(-i).alias("contactId"),  # (any Int64: the encoder does not judge)
        pl.when(i % 3 == 0).then(None).otherwise(i % 1000).alias("plannedDuration"),
        pl.when(i % 4 == 1).then(None).otherwise("REF-" + i.cast(pl.String)).alias("reference"),
        (description if description is not None else notes.gather(i % 7)).alias("description"),
        pl.lit(None, dtype=pl.String).alias("personId"),
        pl.when(i % 2 == 0).then("PO" + i.cast(pl.String)).alias("orderNumber"),
        pl.when(i % 3 == 1).then("G" + i.cast(pl.String)).alias(CF[0]),
        pl.when(i % 7 < 3).then(pl.lit("x" * 13)).alias(CF[1]),
    ).cast(text)


def both(frame: pl.DataFrame, mapping: Mapping) -> tuple[list[str], list[str]]:
    return payload_module._encoded(frame, mapping, _jsonrows).to_list(), payload_module._concatenated(
        frame, mapping
    ).to_list()


def test_many_chunks_misaligned_and_sliced_columns(mapping: Mapping) -> None:
    pieces = [job_frame(n, offset=o) for n, o in ((7, 0), (1, 7), (0, 8), (30, 8), (5, 38))]
    frame = pl.concat(pieces, rechunk=False)
    # re-chunk some columns differently, and slice: chunks start at an offset inside their buffers
    frame = frame.with_columns(pl.concat([frame["reference"].slice(0, 20), frame["reference"].slice(20)]).rechunk())
    frame = frame.slice(3, 35)
    assert frame["typeId"].n_chunks() > 1 and frame["reference"].n_chunks() == 1
    encoded, expected = both(frame, mapping)
    assert encoded == expected
    assert json.loads(encoded[0])["typeId"] == 4


def test_halves_in_two_threads_join_in_order(mapping: Mapping) -> None:
    n = payload_module._SPLIT_ROWS + 3
    frame = job_frame(n)
    encoded, expected = both(frame, mapping)
    assert encoded == expected
    assert [json.loads(p)["typeId"] for p in (encoded[0], encoded[n // 2], encoded[-1])] == [1, n // 2 + 1, n]


def test_rows_longer_than_a_block_and_rows_across_block_ends(mapping: Mapping) -> None:
    # 8 MB blocks: a 9 MB description, and 1 MB ones that fill a block partway through a row
    big = pl.when(pl.int_range(0, 30) % 10 == 0).then(pl.lit("é" * 4_500_000)).otherwise(pl.lit('"q"' * 350_000))
    frame = job_frame(30, description=big)
    encoded, expected = both(frame, mapping)
    assert encoded == expected


def test_short_rows_are_inline_and_rows_can_be_empty(mapping: Mapping) -> None:
    frame = job_frame(3).with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ["reference", "description"])
    frame = frame.with_columns(
        pl.Series("typeId", [7, None, None]),
        pl.lit(None, dtype=pl.Int64).alias("contactId"),
        pl.lit(None, dtype=pl.Int64).alias("plannedDuration"),
        pl.lit(None, dtype=pl.String).alias("orderNumber"),
        pl.lit(None, dtype=pl.String).alias(CF[0]),
        pl.Series(CF[1], [None, None, "v"]),
    )
    encoded, expected = both(frame, mapping)
    assert (
        encoded
        == expected
        == [
            '{"typeId":7}',  # 12 bytes: kept inside its view
            "{}",
            '{"customFields":[{"definitionId":432632,"value":"v"}]}',
        ]
    )


def test_no_rows(mapping: Mapping) -> None:
    assert both(job_frame(0), mapping) == ([], [])


def test_int64_extremes() -> None:
    series = [pl.Series([0, -1, 2**63 - 1, -(2**63)], dtype=pl.Int64)]
    members = [(b'"n":', [(b"", 0, b"")], b"")]
    rows = pl.Series(payload_module._ArrowRows(_jsonrows.encode(series, members, 0, 4))).to_list()
    assert rows == [json.dumps({"n": v}, separators=(",", ":")) for v in (0, -1, 2**63 - 1, -(2**63))]


def test_with_and_without_polars_allocator_alike() -> None:
    series = [pl.Series(["a", None, "b" * 40])]
    members = [(b'"s":', [(b"", 0, b"")], b"")]
    results = [
        pl.Series(payload_module._ArrowRows(_jsonrows.encode(series, members, 0, 3, allocator))).to_list()
        for allocator in (None, payload_module._polars_allocator())
    ]
    assert results[0] == results[1] == ['{"s":"a"}', "{}", '{"s":"' + "b" * 40 + '"}']
    assert payload_module._polars_allocator() is not None  # (else the encoder silently uses malloc: slower)


@pytest.mark.parametrize(
    ("series", "members", "start", "stop", "error", "match"),
    [
        ([pl.Series([1.5])], [(b"", [(b"", 0, b"")], b"")], 0, 1, TypeError, "neither Int64 \\(l\\) nor String"),
        ([pl.Series([1]), pl.Series([1, 2])], [], 0, 1, ValueError, "different lengths"),
        ([pl.Series([1])], [], 0, 2, ValueError, "not within the 1 rows"),
        ([pl.Series([1])], [], -1, 1, ValueError, "not within"),
        ([pl.Series([1])], [(b"", [(b"", 1, b"")], b"")], 0, 1, ValueError, "column index 1 out of range"),
        ([pl.Series([1])], [("text", [], b"")], 0, 1, TypeError, "prefix must be bytes"),
        ([pl.Series([1])], [[b"", [], b""]], 0, 1, TypeError, "member 0 must be a tuple"),
        ([pl.Series([1])], [(b"", [[b"", 0, b""]], b"")], 0, 1, TypeError, "an item must be a tuple"),
        ([pl.Series([1])], [(b"", [(b"", 0, "after")], b"")], 0, 1, TypeError, "after must be bytes"),
    ],
)
def test_refusals(
    series: list[pl.Series], members: list[object], start: int, stop: int, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _jsonrows.encode(series, members, start, stop)


def test_picked_rows_of_many_chunks_equal_the_rows_gathered(mapping: Mapping) -> None:
    frame = pl.concat([job_frame(n, offset=o) for n, o in ((5, 0), (0, 5), (9, 5), (1, 14), (6, 15))], rechunk=False)
    for picks in ([0, 1, 4, 5, 13, 14, 15, 20], [20], [3, 3, 7], [], list(range(21))):
        rows = pl.Series(picks, dtype=pl.Int64)
        encoded = payload_module._encoded(frame, mapping, _jsonrows, rows).to_list()
        assert encoded == payload_module._concatenated(frame[rows], mapping).to_list()


def test_picked_rows_in_two_threads(mapping: Mapping) -> None:
    frame = job_frame(2 * payload_module._SPLIT_ROWS + 10)
    rows = pl.int_range(0, frame.height, 2, dtype=pl.Int64, eager=True)
    encoded = payload_module._encoded(frame, mapping, _jsonrows, rows)
    assert encoded.to_list() == payload_module._concatenated(frame[rows], mapping).to_list()


@pytest.mark.parametrize(
    ("picks", "match"),
    [
        (pl.Series([2, 1], dtype=pl.Int64), "ascending positions below 3"),
        (pl.Series([0, 3], dtype=pl.Int64), "ascending positions below 3"),
        (pl.Series([-1], dtype=pl.Int64), "ascending positions below 3"),
        (pl.Series([0, None], dtype=pl.Int64), "without nulls"),
        (pl.Series(["0"]), "Int64 positions"),
    ],
)
def test_bad_picks_are_refused(picks: pl.Series, match: str) -> None:
    series = [pl.Series([1, 2, 3])]
    with pytest.raises(ValueError, match=match):
        _jsonrows.encode(series, [(b'"n":', [(b"", 0, b"")], b"")], 0, picks.len(), None, picks)


def test_a_layout_the_encoder_does_not_take_falls_back_to_polars(
    mapping: Mapping, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing:
        @staticmethod
        def encode(*args: object) -> tuple[object, object]:
            raise TypeError("column 0: Arrow format 'U' is neither Int64 (l) nor String (vu)")

    frame = job_frame(4)
    expected = payload_module._concatenated(frame, mapping).to_list()
    monkeypatch.setattr(payload_module, "_jsonrows", Refusing)
    assert payload_module.payloads(frame, mapping).to_list() == expected

    class Broken:  # any other TypeError is a bug of ours: it is not hidden behind the fallback
        @staticmethod
        def encode(*args: object) -> tuple[object, object]:
            raise TypeError("member 0 must be a tuple (prefix, items, suffix)")

    monkeypatch.setattr(payload_module, "_jsonrows", Broken)
    with pytest.raises(TypeError, match="member 0"):
        payload_module.payloads(frame, mapping)


def test_members_are_copied_not_borrowed() -> None:
    # the texts are read with the GIL let go: they must not belong to objects that may go away meanwhile
    series = [pl.Series(["x" * 20] * 3)]

    def members() -> object:  # a generator: its tuples are gone once encode() has made its list of them
        yield (b'"k' + b"k" * 50 + b'":', [(b"<" * 50, 0, b">" * 50)], b"!" * 50)

    rows = pl.Series(payload_module._ArrowRows(_jsonrows.encode(series, members(), 0, 3))).to_list()
    assert rows == ['{"k' + "k" * 50 + '":' + "<" * 50 + '"' + "x" * 20 + '"' + ">" * 50 + "!" * 50 + "}"] * 3
