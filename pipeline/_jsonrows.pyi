"""Type stub of the C extension pipeline/_jsonrows.c (see its header comment)."""

from collections.abc import Sequence

import polars as pl

def encode(
    columns: Sequence[pl.Series],
    members: Sequence[tuple[bytes, Sequence[tuple[bytes, int, bytes]], bytes]],
    start: int,
    stop: int,
    allocator: object | None = None,
    picks: pl.Series | None = None,
    /,
) -> tuple[object, object]: ...
