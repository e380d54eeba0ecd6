"""Stream URLs and credentials, and the rtsp / http_mjpeg config variants."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit

import pytest

from edge_runtime.config.loader import load_config
from edge_runtime.config.schema import HttpMjpegSource, RtspSource
from edge_runtime.errors import ConfigError
from edge_runtime.pipeline import source_backoff
from edge_runtime.sources import build_source
from edge_runtime.stream_url import StreamUrl

SECRET = "s3cr/t:@x"  # needs percent-encoding in a URL


def test_credentials_inside_the_url_are_decoded() -> None:
    url = StreamUrl.parse("rtsp://cam%20op:s3cr%2Ft%3A%40x@10.0.0.7/live?ch=1", ("rtsp",))
    assert (url.username, url.password) == ("cam op", SECRET)
    assert (url.host, url.port, url.target) == ("10.0.0.7", 554, "/live?ch=1")
    assert url.masked == "rtsp://***:***@10.0.0.7/live?ch=1"
    assert SECRET not in repr(url) and "s3cr" not in repr(url)


def test_credentials_from_fields_go_into_the_url_encoded() -> None:
    url = StreamUrl.parse("rtsp://10.0.0.7:8554/live", ("rtsp",), username="op",
                          password=SECRET)
    full = urlsplit(url.with_credentials())
    assert (unquote(full.username or ""), unquote(full.password or "")) == ("op", SECRET)
    assert (full.hostname, full.port, full.path) == ("10.0.0.7", 8554, "/live")
    assert url.masked == "rtsp://10.0.0.7:8554/live"
    assert url.secrets == (SECRET,)


def test_basic_authorization_header() -> None:
    url = StreamUrl.parse("http://cam/stream", ("http",), username="op", password=SECRET)
    header = url.basic_authorization()
    assert header is not None and header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"op:{SECRET}"
    assert StreamUrl.parse("http://cam/stream", ("http",)).basic_authorization() is None


@pytest.mark.parametrize(("url", "fields", "message"), [
    ("http://cam/stream", {}, "must start with rtsp://"),
    ("rtsp:///live", {}, "has no host"),
    ("rtsp://cam:99999/live", {}, "not a valid URL"),
    ("rtsp://op:pw@cam/live", {"username": "op"}, "give them one way"),
    ("rtsp://cam/live", {"password": "pw"}, "needs a username"),
    ("rtsp://op:a/b@cam/live", {}, "percent-encode"),
    ("rtsp://cam/my live", {}, "white space"),
])
def test_bad_stream_urls(url: str, fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        StreamUrl.parse(url, ("rtsp",), **fields)
    assert "pw" not in str(info.value).replace("password", "")


def config_text(source: str, stall_after_s: float = 30.0) -> str:
    return f"""\
device_id: cam-box
health: {{stall_after_s: {stall_after_s}}}
pipelines:
  - name: door
    source: {source}
    model: {{path: model.tflite}}
"""


def test_rtsp_config_with_env_credentials() -> None:
    text = config_text("{type: rtsp, url: 'rtsp://10.0.0.7/live', username: '${CAM_USER}', "
                       "password: '${CAM_PASSWORD}', transport: udp, open_timeout_s: 4}")
    config = load_config(None, text=text, env={"CAM_USER": "op", "CAM_PASSWORD": SECRET})
    source = config.pipelines[0].source
    assert isinstance(source, RtspSource)
    assert (source.transport, source.open_timeout_s, source.stall_timeout_s) == ("udp", 4, 5)
    assert source.stream_url().password == SECRET
    assert SECRET not in repr(config)
    stream = build_source(source)
    assert stream.live and stream.description == "RTSP stream rtsp://10.0.0.7/live (udp)"
    assert config.source_topic("door") == "edge/cam-box/door/source"


def test_http_mjpeg_defaults_and_backoff() -> None:
    text = config_text("{type: http_mjpeg, url: 'http://op:pw@cam.local:81/stream', "
                       "reconnect_min_s: 0.2, reconnect_max_s: 2}")
    source = load_config(None, text=text, env={}).pipelines[0].source
    assert isinstance(source, HttpMjpegSource)
    assert source.stall_timeout_s == 5.0 and source.open_timeout_s == 10.0
    stream = build_source(source)
    assert stream.description == "HTTP MJPEG stream http://***:***@cam.local:81/stream"
    backoff = source_backoff(source)
    assert (backoff.min_s, backoff.max_s) == (0.2, 2)


@pytest.mark.parametrize(("source", "message"), [
    ("{type: http_mjpeg, url: 'rtsp://op:pw@cam/live'}",
     "url rtsp://\\*\\*\\*:\\*\\*\\*@cam/live must start with http://"),
    ("{type: rtsp, url: 'rtsp://cam/live', transport: quic}", "transport"),
    ("{type: rtsp, url: 'rtsp://cam/live', open_timeout_s: 31}", "open_timeout_s"),
    ("{type: rtsp, url: 'rtsp://cam/live', reconnect_max_s: 60}", "reconnect_max_s"),
    ("{type: rtsp, url: 'rtsp://cam/live', reconnect_min_s: 5, reconnect_max_s: 1}",
     "reconnect_max_s must be >= reconnect_min_s"),
    ("{type: http_mjpeg, url: 'http://cam/s', transport: tcp}", "unknown key"),
])
def test_stream_config_errors(source: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, text=config_text(source), env={})
    text = str(info.value)
    assert any(line.startswith("config:") for line in text.splitlines()), text
    assert re.search(message, text), text
    assert ":pw@" not in text


def test_stall_timeout_must_be_below_the_health_stall_limit() -> None:
    text = config_text("{type: rtsp, url: 'rtsp://cam/live', stall_timeout_s: 20}",
                       stall_after_s=20)
    with pytest.raises(ConfigError, match=r"pipelines.0.source.stall_timeout_s \(20 s\) must be "
                       r"below health.stall_after_s \(20 s\)"):
        load_config(None, text=text, env={})
    ok = config_text("{type: rtsp, url: 'rtsp://cam/live', stall_timeout_s: 19}",
                     stall_after_s=20)
    source = load_config(None, text=ok, env={}).pipelines[0].source
    assert isinstance(source, RtspSource) and source.stall_timeout_s == 19
