"""Windowing: length and hop, gaps and reversals, rate rejection, and window -> input tensor."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.config.schema import NormalizeConfig
from edge_runtime.processing.quantization import quantize
from edge_runtime.processing.windowing import Windower, WindowPreprocessor, rate_within
from edge_runtime.types import Frame, QuantParams, TensorSpec, Window

RATE_HZ = 100.0


def stream(count: int, channels: int = 2, start: float = 0.0,
           rate_hz: float = RATE_HZ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """Samples whose value encodes their index: sample i is (i, 1000 + i, ...)."""
    index = np.arange(count)
    values = np.stack([index + 1000 * c for c in range(channels)], axis=1).astype(np.float32)
    return start + index / rate_hz, values


def first_indexes(windows: list[Window]) -> list[int]:
    return [int(w.samples[0, 0]) for w in windows]


def test_overlapping_windows_are_the_sliding_windows_of_the_stream() -> None:
    times, values = stream(1000)
    windows = Windower(256, 2, hop=128, rate_hz=RATE_HZ).extend(times, values)
    expected = np.lib.stride_tricks.sliding_window_view(values, 256, axis=0)[::128]
    assert len(windows) == len(expected) == 6
    for window, samples in zip(windows, expected, strict=True):
        np.testing.assert_array_equal(window.samples, samples.T)
    assert [w.number for w in windows] == list(range(6))
    assert windows[1].start == pytest.approx(1.28) and windows[1].end == pytest.approx(3.83)
    assert windows[0].count == 256


def test_hop_longer_than_the_window_skips_samples() -> None:
    times, values = stream(100)
    windows = Windower(10, 2, hop=25).extend(times, values)
    assert first_indexes(windows) == [0, 25, 50, 75]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=12),
       hop=st.sampled_from([16, 32, 64, 80]))
def test_block_boundaries_do_not_change_the_windows(cuts: list[int], hop: int) -> None:
    times, values = stream(700)
    whole = Windower(64, 2, hop=hop, rate_hz=RATE_HZ).extend(times, values)
    windower = Windower(64, 2, hop=hop, rate_hz=RATE_HZ)
    pieces: list[Window] = []
    edges = [0, *sorted(cuts), 700]
    for start, end in itertools.pairwise(edges):
        pieces += windower.extend(times[start:end], values[start:end])
    assert [(w.number, w.start) for w in pieces] == [(w.number, w.start) for w in whole]
    for a, b in zip(pieces, whole, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_a_gap_drops_the_partial_window_and_is_counted() -> None:
    windower = Windower(50, 2, hop=50, rate_hz=RATE_HZ, max_gap_s=0.05)
    times, values = stream(130)
    times[80:] += 1.0  # one second missing after sample 79
    windows = windower.extend(times, values)
    # samples 0-49 make a window; 50-79 are cut off by the gap; 80-129 make the next one
    assert first_indexes(windows) == [0, 80]
    assert windower.counters.gaps == 1
    assert windower.counters.unused_samples == 30
    assert windower.counters.windows == 2 and windower.counters.samples == 130


def test_default_gap_limit_is_ten_sample_periods() -> None:
    windower = Windower(20, 2, rate_hz=RATE_HZ)
    times, values = stream(60)
    times[30:] += 8 / RATE_HZ  # a step of 9 periods: allowed
    times[45:] += 15 / RATE_HZ  # a step of 16 periods: a gap
    windower.extend(times, values)
    assert windower.counters.gaps == 1


def test_time_going_backwards_restarts_the_window() -> None:
    windower = Windower(40, 2)
    times, values = stream(100)
    times[60:] -= 0.5  # e.g. a recording played again, or a device clock reset
    windows = windower.extend(times, values)
    assert first_indexes(windows) == [0, 60]
    assert windower.counters.backwards == 1 and windower.counters.gaps == 0
    assert windower.counters.unused_samples == 20


def test_gap_across_blocks_is_seen_too() -> None:
    windower = Windower(50, 2, rate_hz=RATE_HZ)
    times, values = stream(80)
    windower.extend(times[:30], values[:30])
    windows = windower.extend(times[30:] + 5.0, values[30:])
    assert first_indexes(windows) == [30]  # samples 0-29 never make a window
    assert windower.counters.gaps == 1 and windower.counters.unused_samples == 30


def test_windows_off_the_nominal_rate_are_rejected_and_counted() -> None:
    windower = Windower(50, 2, hop=50, rate_hz=RATE_HZ, rate_tolerance=0.05)
    nominal_t, nominal_v = stream(50)
    slow_t, slow_v = stream(50, start=0.5, rate_hz=RATE_HZ * 0.9)  # 10 % slow
    fine_t, fine_v = stream(50, start=0.5 + 49 / 90 + 0.01, rate_hz=RATE_HZ * 1.03)
    windows = windower.extend(np.concatenate([nominal_t, slow_t, fine_t]),
                              np.concatenate([nominal_v, slow_v, fine_v]))
    assert [w.number for w in windows] == [0, 2]  # window 1 was rejected
    assert windower.counters.rate_rejected == 1


def test_rate_within() -> None:
    assert rate_within(101, 1.0, 100.0, 0.01)
    assert not rate_within(101, 1.1, 100.0, 0.05)
    assert not rate_within(101, 0.0, 100.0, 0.05)


def test_reset_drops_the_partial_window() -> None:
    windower = Windower(50, 2)
    times, values = stream(70)
    assert len(windower.extend(times, values)) == 1
    windower.reset()
    assert windower.counters.unused_samples == 20
    assert windower.extend(times[:49] + 10, values[:49]) == []


INT8_SPEC = TensorSpec("window", 0, (1, 256, 3), np.dtype(np.int8),
                       QuantParams(0.03972550854086876, -6))


def test_window_becomes_the_quantized_normalised_tensor() -> None:
    mean, std = [0.001451, -0.000454, 1.000707], [0.129306, 0.026999, 0.106766]
    samples = np.random.default_rng(3).normal(mean, np.asarray(std) * 2, (256, 3))
    window = Window(0, 0.0, 0.255, samples.astype(np.float32))
    pre = WindowPreprocessor(INT8_SPEC, samples=256, channels=3, mean=mean, std=std)
    out = pre.new_input_buffer()
    pre.fill(window, out)
    real = (window.samples.astype(np.float64) - mean) / std
    expected = quantize(real, INT8_SPEC.quant, np.dtype(np.int8))
    assert out.shape == (1, 256, 3) and out.dtype == np.int8
    np.testing.assert_array_equal(out[0], expected)
    assert out.min() == -128 and out.max() == 127  # 2-sigma noise reaches the clip limits


def test_min_max_normalisation_maps_the_range_to_zero_one() -> None:
    spec = TensorSpec("x", 0, (1, 4, 2), np.dtype(np.float32), QuantParams(0.0, 0))
    mean, std = NormalizeConfig(min=[0.0, 10.0], max=[4.0, 20.0]).mean_std()
    pre = WindowPreprocessor(spec, samples=4, channels=2, mean=mean, std=std)
    out = pre.new_input_buffer()
    samples = np.array([[0, 10], [1, 15], [2, 20], [4, 12]], np.float32)
    pre.fill_frame(Frame(0, 0.0, 0.0, window=Window(0, 0.0, 1.0, samples)), out)
    expected = np.array([[0, 0], [0.25, 0.5], [0.5, 1.0], [1.0, 0.2]])
    np.testing.assert_allclose(out[0], expected)


def test_model_input_must_fit_the_window() -> None:
    with pytest.raises(ValueError, match=r"\[1, 128, 3\].*got \[1, 256, 3\]"):
        WindowPreprocessor(INT8_SPEC, samples=128, channels=3)
    pre = WindowPreprocessor(INT8_SPEC, samples=256, channels=3)
    with pytest.raises(ValueError, match="no sensor window"):
        pre.fill_frame(Frame(0, 0.0, 0.0), pre.new_input_buffer())
