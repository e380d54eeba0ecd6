"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian packages
``gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good``) serving JPEG files as RTP/JPEG.

Run with the system Python that has PyGObject (``/usr/bin/python3``), not the test venv::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --frames DIR [--user U --password P]
        [--protocols tcp|udp|tcp+udp]

DIR holds ``000.jpg``, ``001.jpg``, ... (looped at ``--fps``). The stream is at
``rtsp://127.0.0.1:PORT/cam``. Signals: SIGUSR1 drops every client connection (the camera
hangs up; the server keeps listening); SIGSTOP/SIGCONT freeze and resume the whole server
(connections stay open, nothing is sent: a stall); SIGTERM/SIGKILL end it. It prints
``ready`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

MOUNT = "/cam"
ROLE = "camera-user"
PROTOCOLS = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP,
             "tcp+udp": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP}


def pipeline(frames_dir: str, fps: int) -> str:
    # jpegparse does not timestamp multifilesrc's buffers; decoding and videorate do, so the
    # server sends at ``fps`` like a camera instead of as fast as it can
    return (f"( multifilesrc location={frames_dir}/%03d.jpg loop=true "
            f"caps=image/jpeg,framerate={fps}/1 ! jpegdec ! videorate ! "
            f"video/x-raw,framerate={fps}/1 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", required=True)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--protocols", choices=sorted(PROTOCOLS), default="tcp+udp",
                        help="RTP transports the server accepts")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args.frames, args.fps))
    factory.set_shared(True)
    factory.set_protocols(PROTOCOLS[args.protocols])
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        role = Gst.Structure.from_string(
            f"{ROLE}, media.factory.access=(boolean)true, "
            "media.factory.construct=(boolean)true")[0]
        factory.add_role_from_structure(role)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()

    def on_signal(signum: int) -> bool:
        if signum == signal.SIGUSR1:  # hang up on every client
            server.client_filter(
                lambda _server, _client, *_: GstRtspServer.RTSPFilterResult.REMOVE)
        else:
            loop.quit()
        return True  # GLib.SOURCE_CONTINUE: keep the handler

    for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, on_signal, signum)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
