"""Masking credentials: URLs, free text, log lines."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.logs import JournalFormatter, MaskingFormatter
from edge_runtime.redact import mask_text, mask_url


@pytest.mark.parametrize(("url", "expected"), [
    ("rtsp://admin:hunter2@10.0.0.7:554/Streaming/Channels/101",
     "rtsp://***:***@10.0.0.7:554/Streaming/Channels/101"),
    ("rtsp://admin@cam.local/live", "rtsp://***@cam.local/live"),
    ("http://cam.local/video.mjpg", "http://cam.local/video.mjpg"),
    # an unencoded '@' in the password: everything up to the last '@' before the path
    ("rtsp://admin:p@ss@cam.local/live", "rtsp://***:***@cam.local/live"),
    ("http://cam/videostream.cgi?user=admin&pwd=1234&resolution=32",
     "http://cam/videostream.cgi?user=***&pwd=***&resolution=32"),
    ("http://cam/stream?Token=abc;channel=2#x", "http://cam/stream?Token=***;channel=2#x"),
    ("http://cam/stream?keyframe=1", "http://cam/stream?keyframe=1"),
])
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_mask_text_masks_every_url_and_the_known_secrets() -> None:
    text = ("[rtsp @ 0x55d] rtsp://bob:pa/ss@h1/a failed, retry http://eve:x@h2:81/b; "
            "server said pa/ss and pa%2Fss")
    assert mask_text(text, ["pa/ss"]) == (
        "[rtsp @ 0x55d] rtsp://***:***@h1/a failed, retry http://***:***@h2:81/b; "
        "server said *** and ***")


def test_mask_text_leaves_ordinary_text_alone() -> None:
    text = "pipeline cam: HTTP MJPEG stream http://10.0.0.9/stream: connection refused"
    assert mask_text(text, ["", "unrelated"]) == text


hosts = st.from_regex(r"[a-z]{1,12}(\.[a-z]{1,8}){0,2}", fullmatch=True)
# credentials from an alphabet that host and path never use, so a leak cannot hide
secrets = st.text(alphabet=st.sampled_from("ABCDEFGHXYZ0123456789!$%&'()+,;=:@/?#[] ~"),
                  min_size=1, max_size=24)


@settings(max_examples=200, deadline=None)
@given(user=secrets, password=secrets, host=hosts,
       path=st.from_regex(r"(/[a-z]{1,8}){0,3}", fullmatch=True))
def test_no_credential_survives_masking(user: str, password: str, host: str,
                                        path: str) -> None:
    encoded_user, encoded_password = quote(user, safe=""), quote(password, safe="")
    url = f"rtsp://{encoded_user}:{encoded_password}@{host}:554{path}"
    masked = mask_url(url)
    assert masked == f"rtsp://***:***@{host}:554{path}"
    line = mask_text(f"error opening {url}: credentials {password} rejected", [password])
    assert password not in line.replace("***", "")
    assert encoded_password not in line.replace("***", "")


def _format(formatter: logging.Formatter, message: str, *args: object,
            exc: BaseException | None = None) -> str:
    record = logging.LogRecord("edge_runtime.test", logging.WARNING, __file__, 1, message,
                               args, (type(exc), exc, exc.__traceback__) if exc else None)
    return formatter.format(record)


def test_log_lines_and_tracebacks_are_masked() -> None:
    try:
        raise ValueError("cannot parse rtsp://cam:hunter2@10.0.0.7/live")
    except ValueError as err:
        error = err
    for formatter in (MaskingFormatter("%(message)s"), JournalFormatter("%(message)s")):
        line = _format(formatter, "source %s is down", "http://u:hunter2@cam/s", exc=error)
        assert "hunter2" not in line
        assert "http://***:***@cam/s" in line and "rtsp://***:***@10.0.0.7/live" in line


def test_setup_logging_installs_the_masking_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_runtime.logs import setup_logging

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        logging.getLogger("edge_runtime.test").warning("at rtsp://a:hunter2@h/x")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert "rtsp://***:***@h/x" in stream.getvalue() and "hunter2" not in stream.getvalue()
