"""Top-k, labels and payload building."""

from __future__ import annotations

import json

import numpy as np

from edge_runtime.processing.classify import classify, top_k
from edge_runtime.processing.labels import Labels, parse_labels
from edge_runtime.publishing.payload import SCHEMA_VERSION, encode_payload, payload_body
from edge_runtime.types import Classification, Result, StageTimes


def test_top_k_orders_by_score_and_breaks_ties_by_index() -> None:
    scores = np.array([0.1, 0.5, 0.2, 0.5, 0.0], dtype=np.float32)
    assert top_k(scores, 3) == [(1, 0.5), (3, 0.5), (2, np.float32(0.2).item())]


def test_top_k_applies_min_score_and_k_larger_than_classes() -> None:
    scores = np.array([0.1, 0.7, 0.2], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 10, min_score=0.15)] == [1, 2]


def test_labels_plain_and_indexed() -> None:
    assert parse_labels("cat\ndog\n").name(1) == "dog"
    indexed = parse_labels("0 background\n5: person\n")
    assert indexed.name(5) == "person" and indexed.name(3) == "3"
    assert parse_labels("0\n1\n2\n").name(2) == "2"


def test_classify_names_the_classes() -> None:
    result = classify(np.array([0.2, 0.8], np.float32), Labels({0: "off", 1: "on"}), 1, 0.0)
    assert result == (Classification(1, "on", np.float32(0.8).item()),)


def test_payload_has_every_documented_field() -> None:
    result = Result(frame_number=7, capture_ts=1700000000.25, filename="0007_3.jpg",
                    predictions=(Classification(3, "3", 0.96875),),
                    times=StageTimes(preprocess=0.1, inference=1.5, postprocess=0.05, total=2.0))
    body = payload_body(device="pi-1", pipeline="digits", task="classify",
                        model_name="digits_int8", model_sha256="ab" * 32, result=result)
    message = json.loads(encode_payload(body, seq=41))
    assert message["schema"] == SCHEMA_VERSION
    assert message["seq"] == 41
    assert message["device"] == "pi-1" and message["pipeline"] == "digits"
    assert message["ts"] == 1700000000.25
    assert message["frame"] == {"number": 7, "file": "0007_3.jpg"}
    assert message["model"] == {"name": "digits_int8", "sha256": "ab" * 32}
    assert message["latency_ms"]["inference"] == 1.5
    assert message["latency_ms"]["total"] == 2.0
    assert message["predictions"] == [{"index": 3, "label": "3", "score": 0.96875}]
