"""Preprocessing geometry and pixels, checked against independent computations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.processing.preprocess import Preprocessor, map_box_to_frame, plan_resize
from edge_runtime.types import QuantParams, TensorSpec


def spec(h: int, w: int, c: int, dtype: type = np.uint8, scale: float = 1 / 255,
         zp: int = 0) -> TensorSpec:
    return TensorSpec("input", 0, (1, h, w, c), np.dtype(dtype), QuantParams(scale, zp))


def test_letterbox_plan_centres_the_scaled_frame() -> None:
    plan = plan_resize(640, 480, 320, 320, "letterbox")
    # scale = min(320/640, 320/480) = 0.5 -> 320 x 240, centred vertically: 40 px bands
    assert plan.scaled == (320, 240)
    assert plan.offset == (0, 40)
    assert plan.crop == (0, 0, 640, 480)


def test_crop_plan_takes_the_centre_square() -> None:
    plan = plan_resize(640, 480, 224, 224, "crop")
    assert plan.crop == (80, 0, 560, 480)
    assert plan.scaled == (224, 224)


def test_stretch_fills_the_input_with_rgb_pixels() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    pre = Preprocessor(spec(24, 32, 3))
    out = pre.new_input_buffer()
    pre.fill(frame, out)
    expected = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    assert np.array_equal(out[0], expected)


def test_int8_model_gets_pixels_shifted_by_128() -> None:
    frame = np.full((10, 10, 3), 200, np.uint8)
    pre = Preprocessor(spec(5, 5, 3, np.int8, 1 / 255, -128))
    out = pre.new_input_buffer()
    pre.fill(frame, out)
    assert out.dtype == np.int8
    assert np.all(out == 72)


def test_mean_std_normalisation_for_a_float_model() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:] = (0, 127, 255)  # BGR
    pre = Preprocessor(spec(2, 2, 3, np.float32, 0.0, 0), mean=[127.5], std=[127.5])
    out = pre.new_input_buffer()
    pre.fill(frame, out)
    # RGB order: R=255 -> 1.0, G=127 -> -0.0039, B=0 -> -1.0
    assert out[0, 0, 0].tolist() == pytest.approx([1.0, (127 - 127.5) / 127.5, -1.0])


def test_grayscale_model_from_colour_frame() -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[:] = (10, 20, 30)
    pre = Preprocessor(spec(4, 4, 1))
    out = pre.new_input_buffer()
    pre.fill(frame, out)
    expected = round(0.299 * 30 + 0.587 * 20 + 0.114 * 10)  # ITU-R BT.601 luma of BGR
    assert np.all(out == expected)


def test_letterbox_pads_with_the_pad_value() -> None:
    frame = np.full((10, 20, 3), 255, np.uint8)
    pre = Preprocessor(spec(20, 20, 3), resize="letterbox", pad_value=0)
    out = pre.new_input_buffer()
    pre.fill(frame, out)
    assert np.all(out[0, :5] == 0) and np.all(out[0, 15:] == 0)
    assert np.all(out[0, 5:15] == 255)


def test_colour_order_that_cannot_feed_the_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="gray"):
        Preprocessor(spec(8, 8, 3), color="gray")


def test_fill_writes_into_the_given_buffer_without_reallocating() -> None:
    pre = Preprocessor(spec(16, 16, 3))
    out = pre.new_input_buffer()
    address = out.__array_interface__["data"][0]
    for value in (10, 20):
        pre.fill(np.full((30, 40, 3), value, np.uint8), out)
        assert out.__array_interface__["data"][0] == address
        assert np.all(out == value)


sizes = st.integers(min_value=8, max_value=2000)


@given(sizes, sizes, st.integers(16, 640), st.integers(16, 640),
       st.sampled_from(["stretch", "letterbox", "crop"]),
       st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_box_inversion_lands_within_a_pixel(src_w: int, src_h: int, dst_w: int, dst_h: int,
                                            mode: str, fx: float, fy: float) -> None:
    """A point of the source frame, mapped forward into the tensor and back, returns
    within one source pixel (the forward map is written out here independently)."""
    plan = plan_resize(src_w, src_h, dst_w, dst_h, mode)  # type: ignore[arg-type]
    x0, y0, x1, y1 = plan.crop
    px = x0 + fx * (x1 - x0)
    py = y0 + fy * (y1 - y0)
    # forward: source pixel -> tensor pixel -> normalised
    tx = (px - x0) * plan.scaled[0] / (x1 - x0) + plan.offset[0]
    ty = (py - y0) * plan.scaled[1] / (y1 - y0) + plan.offset[1]
    box = (tx / dst_w, ty / dst_h, tx / dst_w, ty / dst_h)
    bx0, by0, _, _ = map_box_to_frame(box, plan)
    assert abs(bx0 - px) <= 1.0 and abs(by0 - py) <= 1.0
