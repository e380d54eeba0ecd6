"""Value types that travel along the data path.

source -> Frame -> preprocess -> tensor -> runner -> outputs -> postprocess -> Result -> payload

Sensor sources produce ``SampleBlock``s, cut into ``Window``s that travel inside a Frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # (H, W, 3) BGR or (H, W) gray, as OpenCV returns them


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Affine quantization of a tensor: real = (q - zero_point) * scale.

    ``scale == 0`` means the tensor is not quantized (float model).
    """

    scale: float
    zero_point: int

    @property
    def is_quantized(self) -> bool:
        return self.scale != 0.0


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, shape, dtype and quantization of one model input or output."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    quant: QuantParams

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "scale": self.quant.scale,
            "zero_point": self.quant.zero_point,
        }


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Consecutive readings of a sensor source, oldest first.

    ``times`` (n,) float64 seconds; ``values`` (n, channels) float32 in source units (after
    the channel's scale and offset).
    """

    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.times.shape[0])


@dataclass(frozen=True, slots=True)
class Window:
    """Consecutive sensor samples cut for one inference.

    ``samples`` is (length, channels) float32 in source units, before normalisation.
    ``start`` and ``end`` are the timestamps of the first and last sample, in the source's
    time base (Unix seconds when samples are stamped on arrival).
    """

    number: int
    start: float
    end: float
    samples: npt.NDArray[np.float32]

    @property
    def count(self) -> int:
        return int(self.samples.shape[0])


@dataclass(slots=True)
class Frame:
    """One captured frame: an image, or a sensor window.

    Sources that read compressed data set ``encoded`` and ``decoder`` so the frame is
    decoded only if it is going to be inferred (latest-frame-wins drops the rest).
    """

    number: int
    capture_ts: float  # wall clock, Unix seconds: goes into the payload
    capture_mono: float  # monotonic seconds: used for latency and stall detection
    image: Image | None = None
    encoded: bytes | None = None
    decoder: Callable[[bytes], Image] | None = None
    filename: str | None = None
    window: Window | None = None

    def decode(self) -> None:
        """Decode encoded bytes now (nothing to do for raw images and sensor windows)."""
        if self.image is None and self.window is None:
            self.pixels()

    def pixels(self) -> Image:
        """The decoded image, decoding once on first use."""
        if self.image is None:
            if self.encoded is None or self.decoder is None:
                raise ValueError(f"frame {self.number} has neither pixels nor encoded data")
            self.image = self.decoder(self.encoded)
            self.encoded = None
        return self.image


@dataclass(frozen=True, slots=True)
class Classification:
    """One class of a classification result."""

    index: int
    label: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": round(self.score, 6)}


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: class, score and its box in the original frame.

    ``box`` is normalised to the frame (xmin, ymin, xmax, ymax in 0..1), ``box_px`` the same
    box in frame pixels; letterbox padding and crop are already undone.
    """

    index: int
    label: str
    score: float
    box: tuple[float, float, float, float]
    box_px: tuple[float, float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": round(self.score, 6),
                "box": [round(v, 6) for v in self.box],
                "box_px": [round(v, 1) for v in self.box_px]}


@dataclass(frozen=True, slots=True)
class OutputValue:
    """One named, dequantized output value (regress / anomaly tasks).

    ``above`` says whether it reached its threshold; None when no threshold is set.
    """

    index: int
    label: str
    value: float
    above: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "label": self.label,
                                "value": round(self.value, 6)}
        if self.above is not None:
            data["above"] = self.above
        return data


Prediction = Classification | Detection | OutputValue


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Milliseconds spent in each stage for one frame."""

    capture_wait: float = 0.0
    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "capture_wait": round(self.capture_wait, 3),
            "decode": round(self.decode, 3),
            "preprocess": round(self.preprocess, 3),
            "inference": round(self.inference, 3),
            "postprocess": round(self.postprocess, 3),
            "total": round(self.total, 3),
        }


@dataclass(frozen=True, slots=True)
class Result:
    """A postprocessed model output for one frame or window, ready to become a payload."""

    frame_number: int
    capture_ts: float
    filename: str | None
    predictions: tuple[Prediction, ...]
    times: StageTimes = field(default_factory=StageTimes)
    extra: dict[str, Any] = field(default_factory=dict)
    window: Window | None = None
    # the frame the result was computed from, for annotated snapshots (never serialised)
    image: Image | None = field(default=None, repr=False, compare=False)
