"""Start/stop the gst-rtsp-server test camera (rtsp_server.py) under the system python3."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decode_send_time_ms(image, now_ms: int) -> int:  # type: ignore[no-untyped-def]
    """The send time the server drew into the frame's top strip (40 bits of wall-clock ms),
    unwrapped against ``now_ms``; BGR or grey frames."""
    grey = image if image.ndim == 2 else image[:, :, 1]
    value = 0
    for bit in range(40):
        top, left = (bit // 20) * 16, (bit % 20) * 16
        if int(grey[top + 8, left + 8]) > 128:
            value |= 1 << bit
    return now_ms - ((now_ms - value) % (1 << 40))


class RtspCamera:
    """One server process; :meth:`start` returns when it listens (or raises RuntimeError
    naming what is missing)."""

    def __init__(self, port: Optional[int] = None, fps: int = 25) -> None:
        self.port = port or free_port()
        self.fps = fps
        self.proc: Optional["subprocess.Popen[str]"] = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 20.0) -> "RtspCamera":
        if not Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(f"needs {SYSTEM_PYTHON} with Debian's {PACKAGES}")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--port", str(self.port),
                                      "--fps", str(self.fps)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP test server did not start ({line or 'no output'}); "
                               f"install with: apt-get install {PACKAGES}")
        while time.monotonic() < deadline:   # listening?
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("RTSP test server did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
