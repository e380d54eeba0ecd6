"""Affine (de)quantization, and what is derived from it: pixel lookup tables (frames) and
the multiply-add of sensor windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.types import QuantParams

PIXEL_LEVELS = 256  # uint8 pixel values 0..255


def dtype_range(dtype: np.dtype[Any]) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def quantize(real: npt.ArrayLike, quant: QuantParams, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """real -> q = clip(round(real / scale) + zero_point) in ``dtype``; identity for float."""
    values = np.asarray(real, dtype=np.float64)
    if not quant.is_quantized or np.issubdtype(dtype, np.floating):
        converted: npt.NDArray[Any] = values.astype(dtype)
        return converted
    lo, hi = dtype_range(dtype)
    q = np.rint(values / quant.scale) + quant.zero_point
    quantized: npt.NDArray[Any] = np.clip(q, lo, hi).astype(dtype)
    return quantized


def dequantize(q: npt.NDArray[Any], quant: QuantParams) -> npt.NDArray[np.float32]:
    """q -> (q - zero_point) * scale as float32; float tensors pass through."""
    if not quant.is_quantized or np.issubdtype(q.dtype, np.floating):
        return q.astype(np.float32, copy=False)
    return ((q.astype(np.float32) - np.float32(quant.zero_point))
            * np.float32(quant.scale))


def default_normalization(quant: QuantParams, dtype: np.dtype[Any]) -> tuple[float, float]:
    """The (mean, std) that feeds raw pixels into the model's quantized range.

    Quantized models: pixel p becomes q = p + qmin (uint8: q = p; int8: q = p - 128), the
    convention of Coral and TFLite image models whose input range spans the full 0..255.
    Float models: p / 255.
    """
    if not quant.is_quantized or np.issubdtype(dtype, np.floating):
        return 0.0, 255.0
    qmin, _ = dtype_range(dtype)
    # q = p + qmin  and  real = (q - zp) * scale  =>  real = (p - (zp - qmin)) * scale
    return float(quant.zero_point - qmin), 1.0 / quant.scale


def pixel_lut(mean: list[float], std: list[float], quant: QuantParams,
              dtype: np.dtype[Any], channels: int) -> npt.NDArray[Any]:
    """A (1, 256, channels) table mapping each pixel value to the model's input value.

    Folds normalisation ``(p - mean) / std`` and input quantization into one lookup, so
    the per-frame cost is a single ``cv2.LUT`` pass writing straight into the input buffer.
    """
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(f"mean/std need 1 or {channels} values")
    pixels = np.arange(PIXEL_LEVELS, dtype=np.float64)[:, None]  # (256, 1)
    mean_arr = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
    std_arr = np.broadcast_to(np.asarray(std, np.float64), (channels,))
    real = (pixels - mean_arr) / std_arr  # (256, channels)
    return quantize(real, quant, dtype).reshape(1, PIXEL_LEVELS, channels)


def affine_input(mean: Sequence[float], std: Sequence[float], quant: QuantParams,
                 dtype: np.dtype[Any], channels: int) -> tuple[npt.NDArray[np.float64],
                                                               npt.NDArray[np.float64]]:
    """Per-channel (gain, offset) so that ``value * gain + offset`` is the model input before
    rounding: normalisation ``(value - mean) / std`` folded into the input quantization
    ``real / scale + zero_point`` (sensor windows; images use ``pixel_lut``)."""
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(f"normalisation needs 1 or {channels} values per list")
    mean_arr = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
    std_arr = np.broadcast_to(np.asarray(std, np.float64), (channels,))
    gain, offset = 1.0 / std_arr, -mean_arr / std_arr
    if quant.is_quantized and not np.issubdtype(dtype, np.floating):
        gain, offset = gain / quant.scale, offset / quant.scale + quant.zero_point
    return gain, offset
