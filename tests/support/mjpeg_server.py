"""A local HTTP MJPEG camera for tests: ``multipart/x-mixed-replace`` JPEG frames at a fixed
rate, like an ESP32-CAM or mjpg-streamer. Standard library only.

In the test process: ``MjpegServer(frames).start()``, with :meth:`MjpegServer.freeze` (the
connection stays open, nothing is sent: a stall) and :meth:`MjpegServer.resume`. As a
process, so a test can kill it and start it again on the same port::

    python tests/support/mjpeg_server.py --port 8081 --frames-dir models/demo/digits

prints ``ready`` once it listens; SIGSTOP/SIGCONT freeze it whole (connections stay open),
SIGKILL kills it. Paths: ``/stream`` (MJPEG), ``/snapshot`` (one JPEG), others 404.
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType

BOUNDARY = "edgeframe"
DEFAULT_FPS = 10.0
DEFAULT_FRAME_FILES = 50
POLL_S = 0.1  # how fast close() stops the accept loop


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # the same port again right after a kill
    camera: MjpegServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        camera = self.server.camera
        if camera.authorization is not None and (
                camera.challenge != "Basic"  # only the challenge is emulated: never passes
                or self.headers.get("Authorization") != camera.authorization):
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'{camera.challenge} realm="camera"')
            self.end_headers()
            return
        path = self.path.split("?", 1)[0]
        if path == "/snapshot":
            self._snapshot(camera.frames[0])
        elif path == "/stream":
            self._stream(camera)
        else:
            self.send_error(404)

    def _snapshot(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, camera: MjpegServer) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        camera.note_client()
        number = 0
        try:
            while not camera.stopping.wait(camera.period_s):
                camera.flowing.wait()
                if camera.stopping.is_set():
                    return
                data = camera.frames[number % len(camera.frames)]
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                number += 1
                camera.sent += 1
        except OSError:
            return  # the client went away

    def log_message(self, format: str, *args: object) -> None:
        pass


class MjpegServer:
    """Serves ``frames`` (JPEG bytes) in a loop at ``fps``; optionally with Basic auth."""

    def __init__(self, frames: list[bytes], *, port: int = 0, fps: float = DEFAULT_FPS,
                 username: str | None = None, password: str | None = None,
                 challenge: str = "Basic") -> None:
        self.frames = frames
        self.period_s = 1.0 / fps
        self.challenge = challenge
        self.authorization = None if username is None else "Basic " + base64.b64encode(
            f"{username}:{password or ''}".encode()).decode()
        self.stopping = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()
        self.clients = 0  # stream requests served
        self.sent = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.camera = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, name="mjpeg-server",
                                        daemon=True)

    def url(self, path: str = "/stream") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def note_client(self) -> None:
        with self._lock:
            self.clients += 1

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def freeze(self) -> None:
        """Stop sending frames; connections stay open."""
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def serve_forever(self) -> None:
        self._server.serve_forever(POLL_S)

    def close(self) -> None:
        self.stopping.set()
        self.flowing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def frames_from(folder: Path, count: int = DEFAULT_FRAME_FILES) -> list[bytes]:
    """The first ``count`` JPEG files of ``folder``, by name."""
    return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:count]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames-dir", type=Path, required=True)
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    camera = MjpegServer(frames_from(args.frames_dir), port=args.port, fps=args.fps,
                         username=args.user, password=args.password)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=camera.close, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    camera.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
