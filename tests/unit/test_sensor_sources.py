"""Sensor source shells against real files, FIFOs and a fake IIO sysfs tree."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.config.schema import FileSensorSource, IioSource
from edge_runtime.errors import SourceError
from edge_runtime.processing.windowing import Windower
from edge_runtime.sources.follow import FileReader, ReplayPacer
from edge_runtime.sources.iio import IioReader, channel_type
from edge_runtime.sources.sensor import SampleBuffer, SensorSource
from edge_runtime.types import SampleBlock

POLL_S = 0.05


def block(start: int, count: int) -> SampleBlock:
    index = np.arange(start, start + count)
    return SampleBlock(index.astype(np.float64), index[:, None].astype(np.float32))


def file_source(path: Path | str, **settings: Any) -> FileSensorSource:
    config = {"type": "file", "path": str(path), "format": "csv",
              "channels": [{"name": "v", "column": 1}], "time": {"column": 0}, **settings}
    return FileSensorSource.model_validate(config)


def read_values(reader: FileReader, want: int, timeout_s: float = 5.0) -> list[float]:
    """Read until ``want`` values arrived (or the source ended or time ran out)."""
    values: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < want and time.monotonic() < deadline:
        got = reader.read(POLL_S)
        if got is None:
            break
        values += got.values[:, 0].tolist()
    return values


def test_sample_buffer_drops_the_oldest_samples_when_full() -> None:
    buffer = SampleBuffer(10)
    buffer.put(block(0, 6))
    buffer.put(block(6, 6))
    assert buffer.dropped == 2 and len(buffer) == 10
    taken = buffer.take(0)
    assert taken is not None and taken.times.tolist() == list(range(2, 12))
    buffer.put(block(100, 25))  # larger than the whole buffer: its newest 10 are kept
    taken = buffer.take(0)
    assert taken is not None and taken.times.tolist() == list(range(115, 125))
    assert buffer.dropped == 17 and buffer.take(0.01) is None


def test_file_is_read_to_its_end_including_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("0,1\n1,oops\n2,3\n3,4")
    reader = FileReader(file_source(path))
    reader.open()
    assert read_values(reader, 10) == [1.0, 3.0, 4.0]
    assert reader.read(POLL_S) is None
    assert reader.counters()["malformed"]["non_numeric"] == 1
    reader.close()


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        FileReader(file_source(tmp_path / "nope.csv")).open()


def test_followed_file_yields_appended_lines_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("0,10\n")
    reader = FileReader(file_source(path, follow=True))
    reader.open()
    assert read_values(reader, 1) == [10.0]
    with path.open("a") as handle:
        handle.write("1,11\n2,1")  # the last line is still being written
    assert read_values(reader, 1) == [11.0]
    with path.open("a") as handle:
        handle.write("2\n")
    assert read_values(reader, 1) == [12.0]
    path.rename(tmp_path / "r.csv.1")  # logrotate: a new file under the same name
    path.write_text("3,13\n4,14\n")
    assert read_values(reader, 2) == [13.0, 14.0]
    path.write_text("5,15\n")  # truncated and rewritten in place
    assert read_values(reader, 1) == [15.0]
    assert reader.counters()["reopened"] == 2
    reader.close()


def test_start_at_end_reads_only_new_lines_but_still_the_header(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("t,v\n0,1\n1,2\n")
    config = FileSensorSource.model_validate({
        "type": "file", "path": str(path), "header": True, "follow": True, "start": "end",
        "channels": [{"name": "v"}], "time": {"column": "t"}})
    reader = FileReader(config)
    reader.open()
    with path.open("a") as handle:
        handle.write("2,3\n")
    assert read_values(reader, 1) == [3.0]
    reader.close()


def test_fifo_is_read_again_when_the_next_writer_comes(tmp_path: Path) -> None:
    fifo = tmp_path / "readings"
    os.mkfifo(fifo)
    reader = FileReader(file_source(fifo, follow=True))
    reader.open()  # does not wait for a writer

    def write(lines: str) -> None:
        with fifo.open("w") as handle:
            handle.write(lines)

    write("0,1\n1,2\n")
    assert read_values(reader, 2) == [1.0, 2.0]
    after_writer = reader.read(POLL_S)
    assert after_writer is not None and len(after_writer) == 0  # the writer left: not the end
    write("2,3\n")
    assert read_values(reader, 1) == [3.0]
    reader.close()


def test_replay_pacer_schedules_by_rate_or_by_timestamps() -> None:
    by_rate = ReplayPacer(100.0)
    first = by_rate.due(np.array([5.0, 9.0]))
    second = by_rate.due(np.array([1.0]))
    np.testing.assert_allclose(np.diff(np.concatenate([first, second])), [0.01, 0.01])
    by_time = ReplayPacer("timestamps")
    due = by_time.due(np.array([10.0, 10.5]))
    later = by_time.due(np.array([12.0]))
    np.testing.assert_allclose([due[1] - due[0], later[0] - due[0]], [0.5, 2.0])


def test_paced_replay_releases_samples_no_earlier_than_due(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("".join(f"{i / 100:.2f},{i}\n" for i in range(20)))
    reader = FileReader(file_source(path, pace="timestamps"))
    reader.open()
    started = time.monotonic()
    assert read_values(reader, 20) == [float(i) for i in range(20)]
    assert time.monotonic() - started >= 0.19  # the last sample is due 0.19 s after the first
    reader.close()


def make_iio_device(base: Path, raws: dict[str, int]) -> Path:
    device = base / "iio:device3"
    device.mkdir(parents=True)
    (device / "name").write_text("lis3dh\n")
    for channel, raw in raws.items():
        (device / f"in_{channel}_raw").write_text(f"{raw}\n")
    (device / "in_accel_scale").write_text("0.5\n")  # shared by accel_x and accel_y
    (device / "in_accel_y_scale").write_text("0.25\n")  # its own wins
    (device / "in_accel_x_offset").write_text("-10\n")
    return device


def iio_source(base: Path, device: str, channels: list[dict[str, Any]]) -> IioSource:
    return IioSource.model_validate({"type": "iio", "device": device, "base_path": str(base),
                                     "channels": channels, "rate_hz": 200})


def test_iio_values_follow_the_sysfs_scale_and_offset(tmp_path: Path) -> None:
    make_iio_device(tmp_path, {"accel_x": 110, "accel_y": 8, "temp": 30})
    reader = IioReader(iio_source(tmp_path, "lis3dh", [
        {"name": "accel_x"}, {"name": "accel_y", "scale": 2.0, "offset": 1.0},
        {"name": "temp"}]))
    reader.open()
    samples = reader.read(0.05)
    reader.close()
    assert len(samples) >= 2
    # (raw + offset) * scale, then the config's scale and offset; temp has neither file
    np.testing.assert_allclose(samples.values[0], [(110 - 10) * 0.5, 8 * 0.25 * 2 + 1, 30])
    assert np.all(np.diff(samples.times) > 0)


def test_iio_errors_name_what_is_there(tmp_path: Path) -> None:
    make_iio_device(tmp_path, {"accel_x": 1})
    with pytest.raises(SourceError, match="IIO device bmp280 not found") as info:
        IioReader(iio_source(tmp_path, "bmp280", [{"name": "accel_x"}])).open()
    assert info.value.hint is not None and "iio:device3" in info.value.hint
    with pytest.raises(SourceError, match="no readable channel accel_z") as info:
        IioReader(iio_source(tmp_path, "iio:device3", [{"name": "accel_z"}])).open()
    assert info.value.hint is not None and "accel_x" in info.value.hint


def test_iio_channel_types() -> None:
    assert [channel_type(n) for n in ("accel_x", "voltage0", "temp", "anglvel_z")] == [
        "accel", "voltage", "temp", "anglvel"]


class FailingReader:
    """A real-time reader that delivers two blocks, then fails like an unplugged device."""

    description = "failing test reader"
    live = True
    realtime = True

    def __init__(self) -> None:
        self.reads = 0

    def open(self) -> None:
        self.reads = 0

    def read(self, timeout_s: float) -> SampleBlock:
        self.reads += 1
        if self.reads > 2:
            raise SourceError("device went away")
        return block((self.reads - 1) * 4, 4)

    def close(self) -> None:
        pass

    def counters(self) -> dict[str, Any]:
        return {}


def test_device_failure_reaches_the_pipeline_after_the_samples_before_it() -> None:
    source = SensorSource(FailingReader(), Windower(8, 1))
    source.open()
    frame = source.read()
    assert frame is not None and frame.window is not None
    assert frame.window.samples[:, 0].tolist() == list(range(8))
    with pytest.raises(SourceError, match="device went away"):
        source.read()
    source.close()
    source.open()  # the pipeline reopens it
    assert source.read() is not None
    source.close()


def test_interrupt_ends_a_read_that_waits_for_samples(tmp_path: Path) -> None:
    path = tmp_path / "quiet.csv"
    path.write_text("")
    source = SensorSource(FileReader(file_source(path, follow=True)), Windower(8, 1))
    source.open()
    threading.Timer(0.2, source.interrupt).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 2.0
    source.close()
