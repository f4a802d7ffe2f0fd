"""A real RTSP camera on 127.0.0.1 for tests and the glass-to-glass benchmark.

Runs under the *system* python3 (Debian's python3-gi + gir1.2-gst-rtsp-server-1.0; they are
not in the venv): ``/usr/bin/python3 rtsp_server.py --port 8554``. Serves H.264 (x264enc,
zero-latency) at rtsp://127.0.0.1:PORT/cam from frames drawn here: a moving bar (so no two
frames are identical) and, in the top 32 rows, the wall-clock send time in milliseconds as 40
black/white 16x16 blocks (bit i at row i // 20, column i % 20), so a receiver can measure
camera-to-result latency from the pixels alone. Prints ``READY <port>`` once listening.
Stops on SIGTERM/SIGINT. Loopback only.
"""

import argparse
import signal
import sys
import threading
import time

BITS = 40
BLOCK = 16
PER_ROW = 20


def draw(width: int, height: int, index: int, now_ms: int) -> bytes:
    """One GRAY8 frame: grey background, a moving bar, the send-time strip."""
    frame = bytearray(b"\x60" * (width * height))
    x0 = (index * 8) % max(1, width - 32)
    for y in range(2 * BLOCK + 8, height):
        frame[y * width + x0:y * width + x0 + 32] = b"\xe0" * 32
    for bit in range(BITS):
        value = 0xFF if (now_ms >> bit) & 1 else 0x00
        top, left = (bit // PER_ROW) * BLOCK, (bit % PER_ROW) * BLOCK
        for y in range(top, top + BLOCK):
            frame[y * width + left:y * width + left + BLOCK] = bytes([value]) * BLOCK
    return bytes(frame)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"MISSING python3-gi / gir1.2-gst-rtsp-server-1.0: {exc}", flush=True)
        return 3
    Gst.init(None)
    for element in ("x264enc", "rtph264pay", "appsrc", "videoconvert"):
        if Gst.ElementFactory.find(element) is None:
            print(f"MISSING GStreamer element {element} (gstreamer1.0-plugins-ugly/-good/-base)",
                  flush=True)
            return 3
    if args.width < PER_ROW * BLOCK or args.height < 2 * BLOCK + 16:
        print(f"frame too small for the time strip (need >= {PER_ROW * BLOCK}x48)", flush=True)
        return 2
    caps = (f"video/x-raw,format=GRAY8,width={args.width},height={args.height},"
            f"framerate={args.fps}/1")
    launch = (f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} ! "
              "videoconvert ! video/x-raw,format=I420 ! "
              f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
              "bitrate=1500 ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    stop = threading.Event()

    def on_configure(_factory: object, media: object) -> None:
        appsrc = media.get_element().get_child_by_name("src")  # type: ignore[attr-defined]
        threading.Thread(target=feed, args=(appsrc,), daemon=True).start()

    def feed(appsrc: object) -> None:
        period, index, start = 1.0 / args.fps, 0, time.monotonic()
        while not stop.is_set():
            due = start + index * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = draw(args.width, args.height, index, int(time.time() * 1000))
            ret = appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(data))  # type: ignore
            if ret != Gst.FlowReturn.OK:
                return   # client gone: the media is torn down
            index += 1

    factory.connect("media-configure", on_configure)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 2
    loop = GLib.MainLoop()

    def quit_(*_: object) -> None:
        stop.set()
        loop.quit()

    signal.signal(signal.SIGTERM, quit_)
    signal.signal(signal.SIGINT, quit_)
    GLib.timeout_add(200, lambda: True)   # lets Python signal handlers run
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
