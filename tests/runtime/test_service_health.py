"""Operable unattended: systemd notify/watchdog over a real UNIX datagram socket, Prometheus
metrics scraped from a running `edge-resnet run`, --metrics-json refreshed while running and
written when the runtime gives up on a source."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

from edge_resnet.runtime.telemetry import PipelineMetrics
from edge_resnet.runtime.systemd import ServiceHealth, SystemdNotifier
from media import digit_frames
from mjpeg_server import MjpegServer


def _datagram_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    return sock


def _received(sock: socket.socket) -> List[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            return messages


def test_notifier_speaks_sd_notify_on_a_real_socket(tmp_path: Path) -> None:
    sock = _datagram_socket(tmp_path / "notify")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify"),
                                "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.enabled and notifier.watchdog_s == 2.0
    assert notifier.notify("READY=1", "STATUS=ok")
    assert _received(sock) == ["READY=1\nSTATUS=ok"]
    other_pid = SystemdNotifier({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_s is None                    # the watchdog is someone else's
    assert not SystemdNotifier({}).enabled and not SystemdNotifier({}).notify("READY=1")
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0edge-resnet-test-{os.getpid()}")
    abstract.settimeout(1)
    assert SystemdNotifier({"NOTIFY_SOCKET": f"@edge-resnet-test-{os.getpid()}"}).notify("X=1")
    assert abstract.recv(64) == b"X=1"


def test_watchdog_pings_only_while_frames_flow(tmp_path: Path) -> None:
    sock = _datagram_socket(tmp_path / "notify")
    metrics = PipelineMetrics()
    health = ServiceHealth(metrics, SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify"),
                                                     "WATCHDOG_USEC": "30000"}))
    health.tick()
    assert _received(sock) == []                            # no frame yet: not ready
    metrics.result(time.perf_counter())
    health.tick()                                           # ready, and the first ping
    assert _received(sock) == ["READY=1\nSTATUS=processing frames", "WATCHDOG=1"]
    health.tick()                                           # no new result since the ping
    assert _received(sock) == ["STATUS=no new frames; watchdog ping withheld"]
    metrics.result(time.perf_counter())
    health.tick()
    assert _received(sock) == ["WATCHDOG=1"]
    metrics.result(time.perf_counter())
    metrics.source_down(time.perf_counter())                # a result, but the source is down
    health.tick()
    assert "WATCHDOG=1" not in _received(sock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(url: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_running_service_notifies_systemd_and_serves_metrics(
        digits_onnx: Path, digits_video: Tuple[Path, list], tmp_path: Path) -> None:
    video, _ = digits_video
    sock = _datagram_socket(tmp_path / "notify")
    port, metrics_json = _free_port(), tmp_path / "metrics.json"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_resnet.cli", "run", str(digits_onnx), str(video),
         str(tmp_path / "e.jsonl"), "--loop", "-1", "--threads", "2", "--stats-interval", "0",
         "--metrics-port", str(port), "--metrics-json", str(metrics_json),
         "--metrics-interval", "0.3", "--camera-id", "bay-2", "--model-version", "7.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline, samples = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                samples = _scrape(url)
            except OSError:
                samples = {}
            processed = samples.get(("edge_resnet_frames_total", (("state", "processed"),)), 0)
            if processed >= 20 and metrics_json.is_file():  # the periodic file may lag 0.3 s
                break
            time.sleep(0.2)
        periodic = json.loads(metrics_json.read_text())    # written while running
        messages = _received(sock)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    processed = samples[("edge_resnet_frames_total", (("state", "processed"),))]
    captured = samples[("edge_resnet_frames_total", (("state", "captured"),))]
    assert 20 <= processed <= captured
    assert samples[("edge_resnet_source_up", ())] == 1.0
    assert samples[("edge_resnet_fps", ())] > 0
    stage = ("edge_resnet_stage_latency_seconds_count", (("stage", "infer"),))
    assert samples[stage] >= 1
    assert samples[("edge_resnet_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", "infer")))] \
        == samples[stage]
    info = [k for k in samples if k[0] == "edge_resnet_run_info"]
    labels = dict(info[0][1])
    assert labels["camera_id"] == "bay-2" and labels["model_version"] == "7.1"
    assert len(labels["model_sha256"]) == 64 and labels["model_name"] == digits_onnx.name
    assert periodic["final"] is False and periodic["camera_id"] == "bay-2"
    final = json.loads(metrics_json.read_text())
    assert final["final"] is True and final["stopped_by_signal"] is True
    assert final["counts"]["processed"] >= periodic["counts"]["processed"]
    messages += _received(sock)
    assert messages[0].startswith("READY=1")
    assert messages.count("WATCHDOG=1") >= 2
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert "Prometheus metrics on http://127.0.0.1:" in stderr


def test_metrics_json_is_written_when_the_source_is_given_up(
        digits_onnx: Path, digits_test_images: Any, tmp_path: Path) -> None:
    frames, _ = digit_frames(digits_test_images, 5)
    server = MjpegServer(frames, fps=20).start()
    metrics_json, out = tmp_path / "metrics.json", tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_resnet.cli", "run", str(digits_onnx), server.url, str(out),
         "--threads", "2", "--stats-interval", "0", "--reconnect-attempts", "1",
         "--metrics-json", str(metrics_json), "--metrics-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not out.exists() or out.read_text().count('"type": "result"') < 5:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        server.stop()
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr
    assert "did not come back after 1 reconnect attempts" in stderr.splitlines()[-1]
    summary = json.loads(metrics_json.read_text())
    assert summary["final"] is True and "did not come back" in summary["error"]
    assert summary["counts"]["processed"] >= 5 and summary["source_up"] is False
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in lines if e["type"] != "result"] == ["run_start", "source_down",
                                                                   "run_end"]


def test_log_lines_have_timestamps_and_levels(digits_onnx: Path, tmp_path: Path) -> None:
    """Every stderr line of a run is ``<ISO time> <LEVEL> <logger>: ...``."""
    import re

    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(images / f"{i}.png")
    (images / "3.png").write_bytes(b"not a png")
    proc = subprocess.run([sys.executable, "-m", "edge_resnet.cli", "run", str(digits_onnx),
                           str(images), str(tmp_path / "e.jsonl"), "--stats-interval", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")
    assert lines and all(pattern.match(line) for line in lines), lines
    assert any(" WARNING " in line and "3.png" in line for line in lines)   # the bad image
    assert any(" INFO " in line and "processed 3" in line for line in lines)  # the summary


def test_prometheus_client_is_imported_only_for_a_metrics_port() -> None:
    code = ("import sys, edge_resnet.runtime.service, edge_resnet.runtime.cli\n"
            "print('prometheus_client' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
