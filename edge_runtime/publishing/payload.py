"""Prediction payloads: versioned, self-describing JSON. Pure functions only.

Schema 1 (documented in README.md, "Payload"; sensor fields in docs/sensors.md):
  schema, device, pipeline, seq, ts, frame{number, file?} (frame sources) or
  window{number, start, end, samples} (sensor sources), model{name, sha256},
  latency_ms{capture_wait, decode, preprocess, inference, postprocess, total},
  task, predictions[{index, label, score}] (best first), plus task-specific keys.
Aggregated (output.aggregate > 1): schema, device, pipeline, seq, model, task, ts (of the
last result), count, results[{ts, frame|window, latency_ms, predictions, ...}].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edge_runtime.types import Result

SCHEMA_VERSION = 1


def payload_body(*, device: str, pipeline: str, task: str, model_name: str, model_sha256: str,
                 result: Result) -> dict[str, Any]:
    """Everything of a payload except ``seq``, which the outbox assigns when it commits."""
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "device": device,
        "pipeline": pipeline,
        "seq": None,
        "ts": round(result.capture_ts, 6),
    }
    window = result.window
    if window is not None:
        body["window"] = {"number": window.number, "start": round(window.start, 6),
                          "end": round(window.end, 6), "samples": window.count}
    else:
        frame: dict[str, Any] = {"number": result.frame_number}
        if result.filename is not None:
            frame["file"] = result.filename
        body["frame"] = frame
    body.update({
        "model": {"name": model_name, "sha256": model_sha256},
        "latency_ms": result.times.as_dict(),
        "task": task,
        "predictions": [p.as_dict() for p in result.predictions],
    })
    body.update(result.extra)
    return body


SHARED_KEYS = ("schema", "device", "pipeline", "seq", "model", "task")


def aggregate_body(bodies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several result bodies of one pipeline as one: the shared fields once, each result's
    own fields (ts, frame or window, latency_ms, predictions, ...) under ``results``."""
    if not bodies:
        raise ValueError("nothing to aggregate")
    body = {key: bodies[0][key] for key in SHARED_KEYS}
    body["ts"] = bodies[-1]["ts"]
    body["count"] = len(bodies)
    body["results"] = [{k: v for k, v in b.items() if k not in SHARED_KEYS} for b in bodies]
    return body


def encode_payload(body: dict[str, Any], seq: int) -> bytes:
    """Compact UTF-8 JSON with ``seq`` filled in."""
    body["seq"] = seq
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
