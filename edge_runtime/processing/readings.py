"""Sensor text lines -> readings: fields by name (JSON) or column (CSV), units, timestamps.

Pure: no I/O. ``parse_csv`` and ``parse_json`` turn one line into raw numbers or raise
``MalformedLineError`` with a reason; ``LineParser`` applies them to the lines a source read,
counts and skips malformed lines, and returns the good readings as one ``SampleBlock``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_runtime.types import SampleBlock

MalformedReason = Literal["bad_json", "bad_encoding", "missing_field", "non_numeric",
                          "too_long"]
MALFORMED_REASONS: tuple[MalformedReason, ...] = (
    "bad_json", "bad_encoding", "missing_field", "non_numeric", "too_long")
TIME_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
Column = int | str  # CSV: index, or a header name
JsonPath = tuple[str, ...]  # JSON: keys from the outside in


class MalformedLineError(ValueError):
    """A line that does not hold a reading; ``reason`` is what gets counted."""

    def __init__(self, reason: MalformedReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: MalformedReason = reason


class HeaderMismatchError(ValueError):
    """The CSV header lacks a configured column name (a configuration problem)."""


def to_number(value: object) -> float:
    """A finite float from a JSON number or a numeric string; booleans, null, NaN and
    infinities are not readings."""
    if isinstance(value, bool) or value is None:
        raise MalformedLineError("non_numeric", f"{value!r} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise MalformedLineError("non_numeric", f"{value[:40]!r} is not a number") from None
    else:
        raise MalformedLineError("non_numeric", f"a {type(value).__name__} is not a number")
    if not math.isfinite(number):
        raise MalformedLineError("non_numeric", f"{value!r} is not finite")
    return number


def parse_csv(line: str, delimiter: str, columns: Sequence[int]) -> list[float]:
    """The numbers in ``columns`` (0-based) of one CSV line (no quoting)."""
    cells = line.split(delimiter)
    values = []
    for column in columns:
        if column >= len(cells):
            raise MalformedLineError("missing_field", f"column {column} missing ({len(cells)} "
                                "columns)")
        values.append(to_number(cells[column]))
    return values


def _lookup(record: dict[str, object], path: JsonPath) -> object:
    node: object = record
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise MalformedLineError("missing_field", f"no field {'.'.join(path)!r}")
        node = node[key]
    return node


def parse_json(line: str, paths: Sequence[JsonPath]) -> list[list[float]]:
    """The numbers at ``paths`` of one JSON reading object, or of each object of a JSON
    array (several readings on one line). One bad reading rejects the whole line."""
    try:
        document = json.loads(line)
    except ValueError as err:  # JSONDecodeError, or a number too long to convert
        raise MalformedLineError("bad_json", str(err)) from None
    records = document if isinstance(document, list) else [document]
    rows = []
    for record in records:
        if not isinstance(record, dict):
            raise MalformedLineError("bad_json", f"a reading must be an object, not "
                                f"{type(record).__name__}")
        rows.append([to_number(_lookup(record, path)) for path in paths])
    return rows


@dataclass(frozen=True, slots=True)
class LineFormat:
    """Where the numbers are in a line, and how they become samples.

    ``places`` are CSV columns or JSON paths, channels first, then the timestamp if any.
    value = raw * scale + offset per channel; time = raw * time_scale seconds.
    """

    kind: Literal["csv", "json"]
    places: tuple[Column | JsonPath, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    has_time: bool = False
    time_scale: float = 1.0
    delimiter: str = ","
    header: bool = False

    @property
    def channels(self) -> int:
        return len(self.scale)


def resolve_columns(header: str, delimiter: str,
                    places: Sequence[Column | JsonPath]) -> list[int]:
    """Column names -> indexes, from a CSV header line; raises HeaderMismatchError."""
    names = [cell.strip() for cell in header.split(delimiter)]
    columns = []
    for place in places:
        if isinstance(place, int):
            columns.append(place)
        elif isinstance(place, str) and place in names:
            columns.append(names.index(place))
        else:
            shown = ", ".join(names[:20])
            raise HeaderMismatchError(f"the header has no column {place!r} (columns: {shown})")
    return columns


class LineParser:
    """Lines -> one SampleBlock, counting malformed lines per reason instead of failing.

    ``feed`` takes a byte stream in arbitrary chunks (LF or CRLF line ends); ``parse``
    takes complete lines. Empty lines are skipped without counting. A line longer than
    ``max_line_bytes`` is discarded and counted, so a stream without newlines (wrong baud
    rate, binary data) cannot grow memory. With ``header`` the first non-empty line names
    the CSV columns (again after ``reset``, e.g. when a followed file is replaced).
    """

    def __init__(self, line_format: LineFormat, max_line_bytes: int = 4096) -> None:
        self.format = line_format
        self.max_line_bytes = max_line_bytes
        self.malformed: dict[str, int] = dict.fromkeys(MALFORMED_REASONS, 0)
        self.lines = 0
        self._partial = b""
        self._discarding = False  # inside a line already counted as too long
        self._columns: list[int] | None = None
        self._paths: list[JsonPath] = []
        if line_format.kind == "json":
            self._paths = [p for p in line_format.places if isinstance(p, tuple)]
        elif not line_format.header:
            self._columns = [p for p in line_format.places if isinstance(p, int)]
        self._gain = np.asarray(line_format.scale, np.float64)
        self._bias = np.asarray(line_format.offset, np.float64)

    def reset(self) -> None:
        """A new stream starts (a reopened file): drop any partial line, expect the header."""
        self._partial = b""
        self._discarding = False
        if self.format.kind == "csv" and self.format.header:
            self._columns = None

    def count(self, reason: MalformedReason) -> None:
        self.malformed[reason] += 1

    def feed(self, data: bytes, arrival: float) -> SampleBlock:
        """The readings in the complete lines of ``data``; a trailing partial line waits for
        the next chunk."""
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if self._discarding and pieces:
            pieces[0] = b""  # the end of the over-long line, already counted
            self._discarding = False
        if len(self._partial) > self.max_line_bytes:
            if not self._discarding:
                self.count("too_long")
            self._discarding = True
            self._partial = b""
        return self.parse(pieces, arrival)

    def parse(self, lines: Iterable[bytes], arrival: float) -> SampleBlock:
        """The readings among ``lines``; ``arrival`` stamps readings without a time field."""
        rows: list[list[float]] = []
        for raw in lines:
            if len(raw) > self.max_line_bytes:
                self.count("too_long")
                continue
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                self.count("bad_encoding")
                continue
            if not line:
                continue
            self.lines += 1
            try:
                rows.extend(self._parse_line(line))
            except MalformedLineError as err:
                self.count(err.reason)
        return self._block(rows, arrival)

    def _parse_line(self, line: str) -> list[list[float]]:
        fmt = self.format
        if fmt.kind == "json":
            return parse_json(line, self._paths)
        if self._columns is None:  # this is the header line
            self._columns = resolve_columns(line, fmt.delimiter, fmt.places)
            return []
        return [parse_csv(line, fmt.delimiter, self._columns)]

    def _block(self, rows: list[list[float]], arrival: float) -> SampleBlock:
        channels = self.format.channels
        if not rows:
            return empty_block(channels)
        raw = np.asarray(rows, np.float64)  # (n, channels [+ time])
        values = (raw[:, :channels] * self._gain + self._bias).astype(np.float32)
        if self.format.has_time:
            times = raw[:, channels] * self.format.time_scale
        else:
            times = np.full(len(rows), arrival)
        return SampleBlock(times, values)


def empty_block(channels: int) -> SampleBlock:
    return SampleBlock(np.empty(0, np.float64), np.empty((0, channels), np.float32))
