"""Quantization math against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.processing.quantization import (
    default_normalization,
    dequantize,
    pixel_lut,
    quantize,
)
from edge_runtime.types import QuantParams

INT8 = np.dtype(np.int8)
UINT8 = np.dtype(np.uint8)


def test_quantize_rounds_and_clips_to_the_dtype() -> None:
    quant = QuantParams(scale=0.5, zero_point=-10)
    # 1.0 / 0.5 - 10 = -8; 100 / 0.5 - 10 = 190 -> clipped to 127; -100 -> -210 -> -128
    assert quantize([1.0, 100.0, -100.0, 0.26], quant, INT8).tolist() == [-8, 127, -128, -9]


def test_dequantize_inverts_the_affine_map() -> None:
    quant = QuantParams(scale=0.25, zero_point=3)
    q = np.array([3, 7, -1], dtype=np.int8)
    assert dequantize(q, quant).tolist() == [0.0, 1.0, -1.0]


def test_float_tensors_pass_through() -> None:
    values = np.array([0.1, -2.5], dtype=np.float32)
    assert dequantize(values, QuantParams(0.0, 0)).tolist() == pytest.approx([0.1, -2.5])
    assert quantize([0.5], QuantParams(0.0, 0), np.dtype(np.float32)).tolist() == [0.5]


def test_default_normalization_feeds_raw_pixels() -> None:
    # uint8 model with scale 1/255, zp 0: pixel p must become q = p
    mean, std = default_normalization(QuantParams(1 / 255, 0), UINT8)
    lut = pixel_lut([mean], [std], QuantParams(1 / 255, 0), UINT8, 3)
    assert lut[0, :, 0].tolist() == list(range(256))
    # int8 model with zp -128: pixel p must become p - 128
    mean, std = default_normalization(QuantParams(1 / 255, -128), INT8)
    lut = pixel_lut([mean], [std], QuantParams(1 / 255, -128), INT8, 1)
    assert lut[0, :, 0].tolist() == [p - 128 for p in range(256)]
    # float model: p / 255
    mean, std = default_normalization(QuantParams(0.0, 0), np.dtype(np.float32))
    assert (mean, std) == (0.0, 255.0)


def test_lut_applies_per_channel_mean_and_std() -> None:
    quant = QuantParams(scale=1 / 64, zero_point=0)
    lut = pixel_lut([127.5, 0.0, 255.0], [127.5, 255.0, 255.0], quant, INT8, 3)
    # pixel 255: (255-127.5)/127.5 = 1.0 -> 64; 255/255 = 1 -> 64; 0 -> 0
    assert lut[0, 255].tolist() == [64, 64, 0]
    # pixel 0: -1.0 -> -64; 0 -> 0; -1 -> -64
    assert lut[0, 0].tolist() == [-64, 0, -64]


@given(st.floats(min_value=-1.0, max_value=1.0),
       st.floats(min_value=1e-3, max_value=0.1), st.integers(-20, 20))
def test_round_trip_error_is_at_most_half_a_step(value: float, scale: float, zp: int) -> None:
    quant = QuantParams(scale, zp)
    q = quantize([value], quant, INT8)
    if -128 < int(q[0]) < 127:  # not clipped
        assert abs(float(dequantize(q, quant)[0]) - value) <= scale / 2 + 1e-6
