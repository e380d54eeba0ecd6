"""HTTP MJPEG cameras (``multipart/x-mixed-replace``): ESP32-CAM boards, many IP cameras,
``mjpg-streamer``, motion.

Plain ``http.client`` over a socket with timeouts: ``open_timeout_s`` bounds the connection
and every read of the response headers; afterwards each read waits at most until the stall
deadline, so no frame for ``stall_timeout_s`` raises SourceError even while the connection
stays open. The multipart body is cut into JPEG images by :class:`MjpegSplitter` (boundaries
and part headers are skipped as bytes between images), and images are decoded only if they
are inferred (``Frame.encoded``).
"""

from __future__ import annotations

import collections
import http.client
import socket
import time

from edge_runtime.errors import SourceError
from edge_runtime.sources.base import Pacer
from edge_runtime.sources.images import decode_image
from edge_runtime.sources.mjpeg import MjpegSplitter
from edge_runtime.stream_url import StreamUrl
from edge_runtime.types import Frame

READ_CHUNK_BYTES = 64 * 1024
MULTIPART_TYPE = "multipart/x-mixed-replace"
USER_AGENT = "edge-runtime"


def describe_socket_error(err: OSError, where: str, open_timeout_s: float) -> str:
    """One line for a failed connection, for the offline reason."""
    if isinstance(err, socket.gaierror):
        return f"{where}: host name not found ({err.strerror})"
    if isinstance(err, ConnectionRefusedError):
        return f"{where}: connection refused (camera off, or wrong port?)"
    if isinstance(err, TimeoutError):
        return f"{where}: no answer within {open_timeout_s:g} s"
    return f"{where}: {err.strerror or err}"


class HttpMjpegStream:
    """Live JPEG frames from an HTTP multipart MJPEG stream."""

    live = True

    def __init__(self, url: StreamUrl, *, fps: float | None = None,
                 open_timeout_s: float = 10.0, stall_timeout_s: float = 5.0) -> None:
        self.url = url
        self.open_timeout_s = open_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.description = f"HTTP MJPEG stream {url.masked}"
        self._pacer = Pacer(fps)
        self._connection: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._socket: socket.socket | None = None  # the response's, for per-read timeouts
        self._splitter = MjpegSplitter()
        self._pending: collections.deque[bytes] = collections.deque()
        self._last_frame_mono = 0.0
        self._number = 0

    def open(self) -> None:
        self.close()
        connection = http.client.HTTPConnection(self.url.host, self.url.port,
                                                timeout=self.open_timeout_s)
        headers = {"User-Agent": USER_AGENT, "Accept": f"{MULTIPART_TYPE}, */*"}
        authorization = self.url.basic_authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            connection.request("GET", self.url.target, headers=headers)
            # an HTTP/1.0 or "Connection: close" answer hands the socket to the response and
            # the connection forgets it: keep it for the read timeouts
            sock = connection.sock
            response = connection.getresponse()
            self._check(response)
        except OSError as err:
            connection.close()
            raise SourceError(describe_socket_error(err, self.description,
                                                    self.open_timeout_s)) from None
        except http.client.HTTPException as err:
            connection.close()
            raise SourceError(f"{self.description}: not an HTTP answer "
                              f"({type(err).__name__})") from None
        except SourceError:
            connection.close()
            raise
        self._connection, self._response, self._socket = connection, response, sock
        self._splitter = MjpegSplitter()
        self._last_frame_mono = time.monotonic()

    def _check(self, response: http.client.HTTPResponse) -> None:
        """The answer must be 200 with a multipart body; otherwise say what it was."""
        where = self.description
        if response.status == http.client.UNAUTHORIZED:
            challenge = response.getheader("WWW-Authenticate", "")
            if challenge.lower().startswith("digest"):
                raise SourceError(f"{where}: HTTP 401, the camera asks for Digest "
                                  "authentication, which http_mjpeg does not support",
                                  hint="allow Basic authentication on the camera, or use its "
                                  "RTSP stream")
            raise SourceError(f"{where}: HTTP 401 Unauthorized "
                              f"({'wrong' if self.url.username else 'no'} credentials)",
                              hint="check username and password")
        if response.status != http.client.OK:
            raise SourceError(f"{where}: HTTP {response.status} {response.reason}")
        content_type = response.getheader("Content-Type", "")
        if not content_type.lower().startswith(MULTIPART_TYPE):
            hint = ("it serves single snapshots; use the camera's MJPEG stream URL"
                    if content_type.lower().startswith("image/") else None)
            raise SourceError(f"{where}: not an MJPEG stream (Content-Type "
                              f"{content_type or 'missing'})", hint=hint)

    def read(self) -> Frame:
        response, sock = self._response, self._socket
        if response is None or sock is None:
            raise SourceError(f"{self.description} is not open")
        while True:
            while self._pending:
                data = self._pending.popleft()
                if self._pacer.admit():  # frames above the fps cap are skipped undecoded
                    frame = Frame(self._number, time.time(), time.monotonic(), encoded=data,
                                  decoder=decode_image)
                    self._number += 1
                    return frame
            remaining = self._last_frame_mono + self.stall_timeout_s - time.monotonic()
            if remaining <= 0:
                raise self._stalled()
            sock.settimeout(remaining)
            try:
                chunk = response.read1(READ_CHUNK_BYTES)
            except TimeoutError:
                raise self._stalled() from None
            except (OSError, http.client.HTTPException) as err:
                raise SourceError(f"{self.description}: connection lost "
                                  f"({getattr(err, 'strerror', None) or type(err).__name__})"
                                  ) from None
            if not chunk:
                raise SourceError(f"{self.description}: the camera closed the stream")
            frames = self._splitter.feed(chunk)
            if frames:
                self._last_frame_mono = time.monotonic()
                self._pending.extend(frames)

    def _stalled(self) -> SourceError:
        return SourceError(f"{self.description}: no frame for {self.stall_timeout_s:g} s "
                           "(stream stalled)")

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._socket = None
        self._pending.clear()
