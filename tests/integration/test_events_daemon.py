"""Change events and snapshots from the daemon, against a real Mosquitto.

A scripted sequence of held-out digit frames (runs of the same digit of different lengths)
goes through the daemon with ``events: {mode: change, debounce_frames: 2,
keep_predictions: true}``. The events expected are derived here from the predictions the
daemon published; the events it published must be exactly those, with their own gap-free
``seq``. Snapshots arrive retained, scaled to ``max_width``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.bundled import models_dir
from tests.conftest import SubscriberFactory
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DaemonProcess
from tests.support.subscriber import read_retained

MODELS = models_dir()
DEBOUNCE_FRAMES = 2
SNAPSHOT_WIDTH_PX = 64
# digit of each scripted frame: runs of 1 to 4 frames, so some changes are debounced away
SCRIPT = [1, 1, 1, 4, 1, 1, 5, 5, 5, 5, 7, 2, 2, 9, 9, 9, 3, 0, 0, 0, 8, 8, 6, 6, 6, 6]
CONFIG = """\
device_id: events
state_dir: {state}
health: {{enabled: false}}
mqtt: {{port: {port}}}
pipelines:
  - name: digits
    source: {{type: images, path: {frames}}}
    model:
      path: {models}/digits_int8.tflite
      labels: {models}/digits_labels.txt
      threads: 1
    task: {{type: classify, top_k: 1}}
    events: {{mode: change, debounce_frames: {debounce}, keep_predictions: true}}
    snapshot: {{min_interval_s: 0, max_width: {width}}}
"""


def scripted_frames(folder: Path) -> Path:
    """Held-out frames copied in the order of SCRIPT (file names sort in that order)."""
    by_digit: dict[int, list[Path]] = {}
    for path in sorted((MODELS / "demo" / "digits").glob("*.jpg")):
        by_digit.setdefault(int(path.stem.split("_")[1]), []).append(path)
    folder.mkdir()
    for number, digit in enumerate(SCRIPT):
        shutil.copy(by_digit[digit][number], folder / f"{number:04d}.jpg")
    return folder


def expected_events(predictions: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    """(frame, new top label, previous label) for each change held DEBOUNCE_FRAMES frames."""
    events: list[tuple[int, str, str | None]] = []
    confirmed: str | None = None
    run_label, run_length = None, 0
    for payload in predictions:
        label = payload["predictions"][0]["label"]
        if events and label == confirmed:
            run_label, run_length = None, 0
            continue
        run_length = run_length + 1 if label == run_label else 1
        run_label = label
        if run_length == DEBOUNCE_FRAMES:
            events.append((payload["frame"]["number"], label, confirmed))
            confirmed, run_label, run_length = label, None, 0
    return events


def test_change_events_follow_the_predictions_with_their_own_seq(
        broker: MosquittoBroker, subscriber_factory: SubscriberFactory, tmp_path: Path) -> None:
    config = tmp_path / "events.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=broker.port,
                                    frames=scripted_frames(tmp_path / "frames"), models=MODELS,
                                    debounce=DEBOUNCE_FRAMES, width=SNAPSHOT_WIDTH_PX))
    topics = ["edge/events/digits/predictions", "edge/events/digits/events"]
    subscriber = subscriber_factory(broker.host, broker.port, topics)
    daemon = DaemonProcess(config, [], tmp_path / "daemon.log").start()
    try:
        assert daemon.wait(60) == 0, daemon.log_text()  # the images end: it stops by itself
    finally:
        daemon.close()
    assert subscriber.wait_for(lambda: len(subscriber.messages(topics[0])) == len(SCRIPT),
                               timeout_s=10)
    predictions = sorted((m.json() for m in subscriber.messages(topics[0])),
                         key=lambda p: p["seq"])
    assert [p["frame"]["number"] for p in predictions] == list(range(len(SCRIPT)))
    expected = expected_events(predictions)
    assert len(expected) >= 5, "the script should produce several changes"
    assert subscriber.wait_for(lambda: len(subscriber.messages(topics[1])) >= len(expected),
                               timeout_s=10)
    events = sorted((m.json() for m in subscriber.messages(topics[1])), key=lambda p: p["seq"])
    assert [e["seq"] for e in events] == list(range(len(expected)))  # own stream, no gaps
    got = [(e["frame"]["number"], *_labels(e["event"])) for e in events]
    assert got == expected
    capture_ts = {p["frame"]["number"]: p["ts"] for p in predictions}
    for event, (frame, _, _) in zip(events, expected, strict=True):
        run_start = frame - DEBOUNCE_FRAMES + 1
        assert event["event"]["since_ts"] == capture_ts[run_start]
        assert event["predictions"] == predictions[frame]["predictions"]

    snapshot = read_retained(broker.host, broker.port, "edge/events/digits/snapshot")
    assert snapshot is not None and snapshot[:2] == b"\xff\xd8"  # a JPEG
    image = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] == SNAPSHOT_WIDTH_PX


def _labels(event: dict[str, Any]) -> tuple[str, str | None]:
    (current,) = event["state"]
    previous = None if event["previous"] is None else next(iter(event["previous"]))
    return current, previous
