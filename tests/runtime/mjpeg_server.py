"""A real MJPEG-over-HTTP server on 127.0.0.1 for reconnect tests (multipart/x-mixed-replace)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional

import cv2
import numpy as np

BOUNDARY = "edgeresnetframe"


class MjpegServer:
    """Serves ``frames`` (BGR) in a loop at ``fps`` on /stream.mjpg until :meth:`stop`;
    while :attr:`frozen`, the same frame over and over."""

    def __init__(self, frames: List[np.ndarray], port: int = 0, fps: float = 30.0) -> None:
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps = fps
        self.port = port
        self.served = 0
        self.frozen = False      # True: keep sending the same frame (a stalled camera stack)
        self._stopping = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "MjpegServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type",
                                 f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while not server._stopping.is_set():
                        if server.frozen:
                            i -= 1   # the frame just sent, again and again
                        data = server.jpegs[i % len(server.jpegs)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(data)}\r\n\r\n".encode())
                        self.wfile.write(data + b"\r\n")
                        server.served += 1
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._stopping.clear()
        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        """Stop serving and end the open streams (clients see the connection close)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
