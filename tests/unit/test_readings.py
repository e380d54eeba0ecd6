"""Line parsers: fields by name (JSON) or column (CSV), units, and malformed lines counted."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.processing.readings import (
    HeaderMismatchError,
    LineFormat,
    LineParser,
    MalformedLineError,
    parse_csv,
    parse_json,
    to_number,
)

CSV_WITH_TIME = LineFormat(kind="csv", places=(1, 3, 0), scale=(2.0, 1.0), offset=(0.5, 0.0),
                           has_time=True, time_scale=1e-3)


def reason_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(MalformedLineError) as info:
        call()
    return info.value.reason


def test_csv_columns_are_picked_by_index() -> None:
    assert parse_csv("10, 1.5 ,x,-2e-3", ",", [3, 1]) == [-0.002, 1.5]
    assert parse_csv("1;2;3", ";", [2]) == [3.0]


def test_csv_problems_have_reasons() -> None:
    assert reason_of(lambda: parse_csv("1,2", ",", [2])) == "missing_field"
    assert reason_of(lambda: parse_csv("1,abc", ",", [1])) == "non_numeric"
    assert reason_of(lambda: parse_csv("1,nan", ",", [1])) == "non_numeric"
    assert reason_of(lambda: parse_csv("1,", ",", [1])) == "non_numeric"


def test_json_fields_by_name_and_dotted_path() -> None:
    line = '{"t": 12, "acc": {"x": 0.25, "y": "-1.5"}, "ok": true}'
    assert parse_json(line, [("acc", "x"), ("acc", "y"), ("t",)]) == [[0.25, -1.5, 12.0]]


def test_json_array_holds_several_readings() -> None:
    assert parse_json('[{"v": 1}, {"v": 2}]', [("v",)]) == [[1.0], [2.0]]


def test_json_problems_have_reasons() -> None:
    assert reason_of(lambda: parse_json('{"v": 1', [("v",)])) == "bad_json"
    assert reason_of(lambda: parse_json('"text"', [("v",)])) == "bad_json"
    assert reason_of(lambda: parse_json('[{"v": 1}, 3]', [("v",)])) == "bad_json"
    assert reason_of(lambda: parse_json('{"w": 1}', [("v",)])) == "missing_field"
    assert reason_of(lambda: parse_json('{"v": {"x": 1}}', [("v", "y")])) == "missing_field"
    assert reason_of(lambda: parse_json('{"v": true}', [("v",)])) == "non_numeric"
    assert reason_of(lambda: parse_json('{"v": null}', [("v",)])) == "non_numeric"
    assert reason_of(lambda: parse_json('{"v": NaN}', [("v",)])) == "non_numeric"
    assert reason_of(lambda: parse_json('{"v": [1]}', [("v",)])) == "non_numeric"


def test_to_number_accepts_numbers_and_numeric_strings_only() -> None:
    assert to_number(3) == 3.0 and to_number(" 4.5 ") == 4.5
    assert reason_of(lambda: to_number(False)) == "non_numeric"
    assert reason_of(lambda: to_number("inf")) == "non_numeric"


def test_parser_applies_scale_offset_and_time_unit() -> None:
    parser = LineParser(CSV_WITH_TIME)
    block = parser.feed(b"1000,1,x,10\n1002,2,x,20\n", arrival=99.0)
    np.testing.assert_allclose(block.times, [1.0, 1.002])
    np.testing.assert_allclose(block.values, [[2.5, 10.0], [4.5, 20.0]])
    assert block.values.dtype == np.float32 and block.times.dtype == np.float64


def test_readings_without_time_are_stamped_on_arrival() -> None:
    parser = LineParser(LineFormat(kind="json", places=(("v",),), scale=(1.0,), offset=(0.0,)))
    block = parser.parse([b'{"v": 1}', b'{"v": 2}'], arrival=123.5)
    assert block.times.tolist() == [123.5, 123.5]
    assert block.values[:, 0].tolist() == [1.0, 2.0]


def test_lines_split_across_chunks_and_crlf_are_joined() -> None:
    parser = LineParser(CSV_WITH_TIME)
    stream = b"1000,1,x,10\r\n1001,2,x,20\n1002,3,x,30\n"
    values: list[float] = []
    for start in range(0, len(stream), 5):
        values += parser.feed(stream[start:start + 5], arrival=0.0).values[:, 1].tolist()
    assert values == [10.0, 20.0, 30.0]
    assert sum(parser.malformed.values()) == 0


def test_malformed_lines_are_counted_per_reason_and_skipped() -> None:
    parser = LineParser(LineFormat(kind="json", places=(("a",), ("b",)), scale=(1.0, 1.0),
                                   offset=(0.0, 0.0)))
    lines = [b'{"a": 1, "b": 2}', b'{"a": 1', b'{"a": 1}', b'{"a": "x", "b": 2}', b"",
             b"\xff\xfe", b'{"a": 3, "b": 4}']
    block = parser.parse(lines, arrival=0.0)
    assert block.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert parser.malformed == {"bad_json": 1, "bad_encoding": 1, "missing_field": 1,
                                "non_numeric": 1, "too_long": 0}
    assert parser.lines == 5  # the empty line is not a line of data


def test_header_names_columns_and_is_read_again_after_reset() -> None:
    fmt = LineFormat(kind="csv", places=("ay", "ax", "t"), scale=(1.0, 1.0),
                     offset=(0.0, 0.0), has_time=True, header=True)
    parser = LineParser(fmt)
    block = parser.feed(b"t,ax,ay,label\n0.5,1,2,off\n", arrival=0.0)
    assert block.values.tolist() == [[2.0, 1.0]] and block.times.tolist() == [0.5]
    parser.reset()
    block = parser.feed(b"ay,t,ax\n7,0.6,8\n", arrival=0.0)
    assert block.values.tolist() == [[7.0, 8.0]] and block.times.tolist() == [0.6]


def test_header_without_a_configured_column_is_a_clear_error() -> None:
    fmt = LineFormat(kind="csv", places=("ax", "az"), scale=(1.0, 1.0), offset=(0.0, 0.0),
                     header=True)
    with pytest.raises(HeaderMismatchError, match=r"no column 'az' .*columns: t, ax, ay"):
        LineParser(fmt).feed(b"t,ax,ay\n", arrival=0.0)


def test_over_long_line_is_dropped_once_and_the_stream_recovers() -> None:
    parser = LineParser(CSV_WITH_TIME, max_line_bytes=32)
    assert len(parser.feed(b"1000,1,x,10\n" + b"9" * 40, arrival=0.0)) == 1
    assert len(parser.feed(b"9" * 40, arrival=0.0)) == 0  # still the same line
    block = parser.feed(b"999\n1001,2,x,20\n", arrival=0.0)
    assert block.values[:, 1].tolist() == [20.0]
    assert parser.malformed["too_long"] == 1
