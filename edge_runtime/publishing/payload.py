"""Prediction payloads: versioned, self-describing JSON. Pure functions only.

Schema 1 (documented in README.md, "Payload"):
  schema, device, pipeline, seq, ts, frame{number, file?}, model{name, sha256},
  latency_ms{capture_wait, decode, preprocess, inference, postprocess, total},
  task, predictions[{index, label, score}] (best first), plus task-specific keys.
"""

from __future__ import annotations

import json
from typing import Any

from edge_runtime.types import Result

SCHEMA_VERSION = 1


def payload_body(*, device: str, pipeline: str, task: str, model_name: str, model_sha256: str,
                 result: Result) -> dict[str, Any]:
    """Everything of a payload except ``seq``, which the outbox assigns when it commits."""
    frame: dict[str, Any] = {"number": result.frame_number}
    if result.filename is not None:
        frame["file"] = result.filename
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "device": device,
        "pipeline": pipeline,
        "seq": None,
        "ts": round(result.capture_ts, 6),
        "frame": frame,
        "model": {"name": model_name, "sha256": model_sha256},
        "latency_ms": result.times.as_dict(),
        "task": task,
        "predictions": [p.as_dict() for p in result.predictions],
    }
    body.update(result.extra)
    return body


def encode_payload(body: dict[str, Any], seq: int) -> bytes:
    """Compact UTF-8 JSON with ``seq`` filled in."""
    body["seq"] = seq
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
