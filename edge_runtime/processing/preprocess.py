"""Frame -> input tensor: fit (stretch/letterbox/crop), colour order, normalise, quantize.

``plan_resize`` and ``map_boxes_to_frame`` are pure geometry. ``Preprocessor`` owns the
buffers for one model input and fills a caller-provided array without allocating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from edge_runtime.processing.quantization import default_normalization, pixel_lut
from edge_runtime.types import Frame, Image, TensorSpec

ResizeMode = Literal["stretch", "letterbox", "crop"]
ColorOrder = Literal["rgb", "bgr", "gray"]
INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                 "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True, slots=True)
class ResizePlan:
    """How a (src_w x src_h) frame is fitted into a (dst_w x dst_h) tensor.

    The source rectangle ``crop`` (x0, y0, x1, y1) is scaled to ``scaled`` (w, h) and
    pasted at ``offset`` (x, y) in the destination; the rest is padding.
    """

    src_size: tuple[int, int]
    dst_size: tuple[int, int]
    crop: tuple[int, int, int, int]
    scaled: tuple[int, int]
    offset: tuple[int, int]

    @property
    def pads(self) -> bool:
        return self.scaled != self.dst_size


def plan_resize(src_w: int, src_h: int, dst_w: int, dst_h: int, mode: ResizeMode) -> ResizePlan:
    """Geometry of stretch (whole frame, aspect lost), letterbox (whole frame, padded) or
    crop (centre crop to the model's aspect ratio, then scale)."""
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError("sizes must be positive")
    full = (0, 0, src_w, src_h)
    if mode == "stretch":
        return ResizePlan((src_w, src_h), (dst_w, dst_h), full, (dst_w, dst_h), (0, 0))
    if mode == "letterbox":
        scale = min(dst_w / src_w, dst_h / src_h)
        sw = min(dst_w, max(1, round(src_w * scale)))
        sh = min(dst_h, max(1, round(src_h * scale)))
        offset = ((dst_w - sw) // 2, (dst_h - sh) // 2)
        return ResizePlan((src_w, src_h), (dst_w, dst_h), full, (sw, sh), offset)
    # crop: the largest centred source rectangle with the destination's aspect ratio
    if src_w * dst_h > dst_w * src_h:  # source is wider
        cw, ch = max(1, round(src_h * dst_w / dst_h)), src_h
    else:
        cw, ch = src_w, max(1, round(src_w * dst_h / dst_w))
    x0, y0 = (src_w - cw) // 2, (src_h - ch) // 2
    return ResizePlan((src_w, src_h), (dst_w, dst_h), (x0, y0, x0 + cw, y0 + ch),
                      (dst_w, dst_h), (0, 0))


def map_boxes_to_frame(boxes: npt.NDArray[Any], plan: ResizePlan) -> npt.NDArray[np.float64]:
    """Boxes (N, 4) in normalised tensor coordinates (xmin, ymin, xmax, ymax) -> source
    pixels (N, 4).

    Undoes padding (letterbox) and cropping; clipped to the frame.
    """
    dst_w, dst_h = plan.dst_size
    ox, oy = plan.offset
    sw, sh = plan.scaled
    x0, y0, x1, y1 = plan.crop
    src_w, src_h = plan.src_size
    tensor_px = np.asarray(boxes, np.float64).reshape(-1, 4) * (dst_w, dst_h, dst_w, dst_h)
    scale = ((x1 - x0) / sw, (y1 - y0) / sh) * 2
    frame_px = (tensor_px - (ox, oy, ox, oy)) * scale + (x0, y0, x0, y0)
    clipped: npt.NDArray[np.float64] = np.clip(frame_px, 0.0, (src_w, src_h, src_w, src_h))
    return clipped


def map_box_to_frame(box: tuple[float, float, float, float],
                     plan: ResizePlan) -> tuple[float, float, float, float]:
    """One box in normalised tensor coordinates (xmin, ymin, xmax, ymax) -> source pixels."""
    x0, y0, x1, y1 = (float(v) for v in map_boxes_to_frame(np.asarray([box]), plan)[0])
    return x0, y0, x1, y1


def input_geometry(spec: TensorSpec) -> tuple[int, int, int]:
    """(height, width, channels) of an image input shaped [1, H, W, C]."""
    if len(spec.shape) != 4 or spec.shape[0] != 1 or spec.shape[3] not in (1, 3):
        raise ValueError(f"expected an image input shaped [1, H, W, 1 or 3], got "
                         f"{list(spec.shape)}")
    return spec.shape[1], spec.shape[2], spec.shape[3]


class Preprocessor:
    """Turns frames into one model input, reusing its buffers for every frame."""

    def __init__(self, spec: TensorSpec, *, resize: ResizeMode = "stretch",
                 interpolation: str = "linear", color: ColorOrder | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 pad_value: int = 0) -> None:
        self.height, self.width, self.channels = input_geometry(spec)
        self.color: ColorOrder = color or ("gray" if self.channels == 1 else "rgb")
        if (self.color == "gray") != (self.channels == 1):
            raise ValueError(f"colour '{self.color}' cannot feed a model input with "
                             f"{self.channels} channel(s)")
        self.mode: ResizeMode = resize
        self.interpolation = INTERPOLATION[interpolation]
        if mean is None or std is None:
            default_mean, default_std = default_normalization(spec.quant, spec.dtype)
            mean, std = [default_mean], [default_std]
        self.lut = pixel_lut(mean, std, spec.quant, spec.dtype, self.channels)
        self.dtype = spec.dtype
        self.pad_value = pad_value
        self._plan: ResizePlan | None = None
        self._scaled: Image | None = None
        self._canvas: Image = np.full((self.height, self.width, 3), pad_value, np.uint8)
        self._colored: Image = np.empty((self.height, self.width, self.channels), np.uint8)

    def new_input_buffer(self) -> npt.NDArray[Any]:
        """An array shaped and typed like the model input, to be filled by ``fill``."""
        return np.zeros((1, self.height, self.width, self.channels), dtype=self.dtype)

    def plan_for(self, image: Image) -> ResizePlan:
        h, w = image.shape[:2]
        plan = self._plan
        if plan is None or plan.src_size != (w, h):
            plan = plan_resize(w, h, self.width, self.height, self.mode)
            self._plan = plan
            self._scaled = np.empty((plan.scaled[1], plan.scaled[0], 3), np.uint8)
            self._canvas[:] = self.pad_value
        return plan

    def fill(self, image: Image, out: npt.NDArray[Any]) -> ResizePlan:
        """Write ``image`` (BGR or gray uint8) into ``out`` (the input buffer); return the plan.

        Resize happens before colour conversion (fewer pixels to convert); no per-frame
        allocation once the frame size is known.
        """
        if image.ndim == 2:
            image = cast(Image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        plan = self.plan_for(image)
        x0, y0, x1, y1 = plan.crop
        region = image[y0:y1, x0:x1]
        scaled = self._scaled
        assert scaled is not None
        cv2.resize(region, plan.scaled, dst=scaled, interpolation=self.interpolation)
        if plan.pads:
            ox, oy = plan.offset
            self._canvas[oy:oy + plan.scaled[1], ox:ox + plan.scaled[0]] = scaled
            fitted = self._canvas
        else:
            fitted = scaled
        target = out.reshape(self.height, self.width, self.channels)
        if self.color == "gray":
            gray = self._colored.reshape(self.height, self.width)
            cv2.cvtColor(fitted, cv2.COLOR_BGR2GRAY, dst=gray)
            cv2.LUT(gray, self.lut, dst=target.reshape(self.height, self.width))
        else:
            if self.color == "rgb":
                cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB, dst=self._colored)
                colored = self._colored
            else:
                colored = fitted
            cv2.LUT(colored, self.lut, dst=target)
        return plan

    def fill_frame(self, frame: Frame, out: npt.NDArray[Any]) -> ResizePlan:
        """``fill`` with the frame's pixels (decoded on first use)."""
        return self.fill(frame.pixels(), out)
