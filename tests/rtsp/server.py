#!/usr/bin/python3
"""A real RTSP camera for the tests: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0) serving H.264
encoded live from numbered PNG frames, looped forever, at rtsp://127.0.0.1:<port>/cam.

Arguments: <port> <frames pattern, e.g. dir/%03d.png> [--auth <user> <password>] (HTTP Basic) [--h265]
[--fps N] (default 10).
Standard output: `ready` once listening, `client` per RTSP connection.
Standard input, one command per line: `pause` stops the frames of the sessions playing now while their
connections stay open (a stalled camera); sessions opened later play normally.
Run with the system /usr/bin/python3, where `gi` lives.
"""
import argparse
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( multifilesrc location={frames} loop=true caps=image/png,framerate={fps}/1 ! pngdec ! videoconvert ! "
    "video/x-raw,format=I420 ! valve name=gate drop=false ! "
    "{encoder} )"
)
# Near-lossless (constant quantiser 12) so that predictions match the frames' own within codec loss.
H264 = (
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 pass=quant quantizer=12 ! "
    "rtph264pay name=pay0 pt=96 config-interval=-1"
)
H265 = "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph265pay name=pay0 pt=96 config-interval=-1"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port")
    parser.add_argument("frames")
    parser.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
    parser.add_argument("--h265", action="store_true")
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE.format(frames=args.frames, fps=args.fps, encoder=H265 if args.h265 else H264))
    factory.set_shared(False)
    gates = []
    factory.connect("media-configure", lambda _f, media: gates.append(media.get_element().get_by_name("gate")))
    if args.auth:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(*args.auth), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", "media.factory.access", True)
        permissions.add_permission_for_role("camera-user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    server.connect("client-connected", lambda _s, _c: print("client", flush=True))
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")

    def pause():
        for gate in gates:
            gate.set_property("drop", True)
        gates.clear()
        return False

    def commands():
        for line in sys.stdin:
            if line.strip() == "pause":
                GLib.idle_add(pause)

    threading.Thread(target=commands, daemon=True).start()
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
