"""Error lines that name the cause: refused, not found, silent server, not a video, a container
whose codec cannot be decoded, a missing camera node; and the cheap reachability probe."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge_resnet.cli import main
from edge_resnet.runtime.diagnose import diagnose_open_failure, probe_source
from edge_resnet.runtime.sources import parse_uri
from media import digit_frames
from mjpeg_server import MjpegServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_named(digits_onnx: Path) -> None:
    port = _free_port()
    uri = parse_uri(f"rtsp://admin:pw@127.0.0.1:{port}/cam")
    assert probe_source(uri) is False
    assert "connection refused by 127.0.0.1" in diagnose_open_failure(uri)
    done = subprocess.run([sys.executable, "-m", "edge_resnet.cli", "run", str(digits_onnx),
                           f"rtsp://admin:pw@127.0.0.1:{port}/cam"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-resnet run: error: cannot open source") and \
        "connection refused" in last
    assert "pw@" not in done.stderr and "admin:***@" in last
    runtime_lines = [line for line in done.stderr.splitlines() if "edge_resnet.runtime" in line]
    assert runtime_lines == [], runtime_lines      # no summary of a run that never started


def test_http_not_found_and_reachable(digits_test_images: list) -> None:
    frames, _ = digit_frames(digits_test_images, 2)
    server = MjpegServer(frames).start()
    try:
        wrong = parse_uri(server.url.replace("stream.mjpg", "nope.mjpg"))
        assert probe_source(wrong) is True
        assert diagnose_open_failure(wrong).startswith("not found")
    finally:
        server.stop()


def test_silent_server_is_not_mistaken_for_a_camera() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        uri = parse_uri(f"rtsp://127.0.0.1:{listener.getsockname()[1]}/x")
        assert "did not answer as a RTSP server" in diagnose_open_failure(uri, timeout=0.5)
    finally:
        listener.close()


def test_files_not_a_video_vs_undecodable(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video at all")
    assert diagnose_open_failure(parse_uri(str(text))).endswith("is not a video (no container "
                                                                "OpenCV/FFmpeg recognises)")
    riff = tmp_path / "odd.avi"
    riff.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(64))
    assert "is a AVI file this OpenCV/FFmpeg cannot decode: unsupported codec" in \
        diagnose_open_failure(parse_uri(str(riff)))
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    assert diagnose_open_failure(parse_uri(str(empty))).endswith("is empty")


def test_missing_camera_node() -> None:
    uri = parse_uri("/dev/video63")
    assert probe_source(uri) is False
    assert "no camera at /dev/video63 (not found" in diagnose_open_failure(uri)


def test_cli_names_a_file_that_is_not_a_video(digits_onnx: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_text("plain text")
    assert main(["run", str(digits_onnx), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a video" in err[0]


def test_connect_timeout_is_named() -> None:
    """A listener whose accept queue is full drops new SYNs (Linux), as an unreachable camera
    does: the connect times out, and the message says so."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)   # fills the queue
    try:
        uri = parse_uri(f"rtsp://127.0.0.1:{port}/cam")
        message = diagnose_open_failure(uri, timeout=0.5)
        if "did not answer" in message:
            pytest.skip("this kernel accepted beyond the backlog; cannot provoke a timeout")
        assert message.startswith(f"timed out connecting to 127.0.0.1:{port} after 0.5 s")
    finally:
        filler.close()
        listener.close()


def _answering_server(reply: bytes, requests: list) -> socket.socket:
    """A one-connection-at-a-time TCP server on 127.0.0.1 that records each request and sends
    ``reply`` (an RTSP/HTTP status line and headers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(4096).decode("latin-1"))
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_rtsp_401_with_and_without_credentials() -> None:
    requests: list = []
    listener = _answering_server(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n", requests)
    port = listener.getsockname()[1]
    try:
        plain = diagnose_open_failure(parse_uri(f"rtsp://127.0.0.1:{port}/cam"))
        with_creds = diagnose_open_failure(parse_uri(f"rtsp://op:hunter2@127.0.0.1:{port}/cam"))
    finally:
        listener.close()
    assert plain.startswith("access denied (RTSP 401)")
    assert with_creds.startswith("the server requires authentication (RTSP 401)")
    assert requests[1].startswith(f"DESCRIBE rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\n")
    assert "hunter2" not in "".join(requests)      # the probe never sends the password


def test_http_probe_sends_the_urls_basic_credentials() -> None:
    requests: list = []
    listener = _answering_server(b"HTTP/1.0 403 Forbidden\r\n\r\n", requests)
    port = listener.getsockname()[1]
    try:
        message = diagnose_open_failure(parse_uri(f"http://op:pa%20ss@127.0.0.1:{port}/v.mjpg"))
    finally:
        listener.close()
    assert message.startswith("access denied (HTTP 403)")
    assert "Authorization: Basic b3A6cGEgc3M=\r\n" in requests[0]   # base64("op:pa ss")
