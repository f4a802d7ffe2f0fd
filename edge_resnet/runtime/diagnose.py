"""Why a source did not open, in words an operator can act on, and cheap reachability probes.

OpenCV only says "could not open". After it fails we look ourselves, cheaply and with short
timeouts: DNS, a TCP connect (refused / timed out), the HTTP status or the RTSP ``DESCRIBE``
answer (not found, credentials), a file's magic bytes (not a video vs a container whose codec
this OpenCV/FFmpeg cannot decode), a camera node's existence and permissions.
Device side: Python 3.8, stdlib only.
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from edge_resnet.runtime.sources import SourceURI

__all__ = ["diagnose_open_failure", "probe_source", "network_address"]

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_MAGIC: Tuple[Tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/QuickTime"), (0, b"RIFF", "AVI"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"FLV", "FLV"), (0, b"\x00\x00\x01\xba", "MPEG-PS"), (188, b"\x47", "MPEG-TS"),
    (0, b"\x00\x00\x00\x01", "H.264/H.265 elementary stream"),
)


def network_address(location: str) -> Optional[Tuple[str, int]]:
    """(host, port) of an rtsp/http URL, or None when it has no host."""
    parts = urlsplit(location)
    if not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    except ValueError:
        return None
    return parts.hostname, port


def probe_source(uri: "SourceURI", timeout: float = 0.3) -> Optional[bool]:
    """True when the source looks reachable (TCP connect / device node present), False when
    not, None when no cheap probe exists (CSI, GStreamer pipelines, files)."""
    if uri.kind in ("rtsp", "http"):
        address = network_address(uri.location)
        if address is None:
            return None
        try:
            socket.create_connection(address, timeout=timeout).close()
            return True
        except OSError:
            return False
    if uri.kind == "v4l2" and uri.location.startswith("/dev/"):
        return os.path.exists(uri.location)
    return None


def diagnose_open_failure(uri: "SourceURI", timeout: float = 2.0) -> str:
    """One sentence on why OpenCV could not open ``uri`` and what to check."""
    if uri.kind in ("rtsp", "http"):
        return _diagnose_network(uri, timeout)
    if uri.kind == "file":
        return _diagnose_file(Path(uri.location))
    if uri.kind == "v4l2":
        return _diagnose_camera(uri.location)
    return ("OpenCV could not start it; check the camera/pipeline (run with -v for the "
            "GStreamer messages)")


def _diagnose_network(uri: "SourceURI", timeout: float) -> str:
    address = network_address(uri.location)
    if address is None:
        return "the URL has no host name"
    host, port = address
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except socket.gaierror:
        return f"host {host!r} not found (DNS lookup failed); check the address"
    except ConnectionRefusedError:
        return (f"connection refused by {host}:{port} (nothing listening: the camera/server "
                "is down or the port is wrong)")
    except socket.timeout:
        return (f"timed out connecting to {host}:{port} after {timeout:g} s (unreachable, "
                "powered off or firewalled)")
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    with sock:
        sock.settimeout(timeout)
        status = _request_status(sock, uri)
    if status is None:
        return (f"{host}:{port} accepts connections but did not answer as a "
                f"{uri.kind.upper()} server; check the port and the scheme")
    code, detail = status
    if code == 404:
        return f"not found: the server has no stream at this path ({uri.kind.upper()} 404)"
    if code in (401, 403):
        if uri.kind == "rtsp" and urlsplit(uri.location).username:
            # this probe sends no credentials: the ones in the URL may still be right
            return (f"the server requires authentication (RTSP {code}); check the user name "
                    "and password in the URL, and if they are right, OpenCV/FFmpeg could not "
                    "open the stream for another reason (run with -v for FFmpeg's messages)")
        return f"access denied ({uri.kind.upper()} {code}): check the user name and password"
    if code >= 400:
        return f"the server refused the stream ({uri.kind.upper()} {code} {detail})"
    return ("the server offers the stream but OpenCV/FFmpeg could not open it: not a video "
            "it can read, or an unsupported codec (run with -v for FFmpeg's messages)")


def _request_status(sock: socket.socket, uri: "SourceURI") -> Optional[Tuple[int, str]]:
    """Status code and reason of an RTSP DESCRIBE / HTTP GET on the open socket."""
    parts = urlsplit(uri.location)
    if uri.kind == "rtsp":
        port = f":{parts.port}" if parts.port else ""
        clean = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"   # no credentials
        request = f"DESCRIBE {clean} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    else:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        auth = ""
        if parts.username:   # what FFmpeg sends too: HTTP Basic from the URL's credentials
            token = base64.b64encode(f"{unquote(parts.username)}:"
                                     f"{unquote(parts.password or '')}".encode()).decode()
            auth = f"Authorization: Basic {token}\r\n"
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}\r\n{auth}\r\n"
    try:
        sock.sendall(request.encode("latin-1", "replace"))
        line = sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError:
        return None
    fields = line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or not fields[0].startswith(("RTSP/", "HTTP/")):
        return None
    return int(fields[1]), fields[2] if len(fields) > 2 else ""


def _diagnose_file(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not head:
        return f"{path} is empty"
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return (f"{path} is a {name} file this OpenCV/FFmpeg cannot decode: unsupported "
                    "codec or a damaged header (run with -v for FFmpeg's messages)")
    return f"{path} is not a video (no container OpenCV/FFmpeg recognises)"


def _diagnose_camera(location: str) -> str:
    node = location if location.startswith("/dev/") else f"/dev/video{location}"
    if not os.path.exists(node):
        return f"no camera at {node} (not found; list cameras with `ls /dev/video*`)"
    if not os.access(node, os.R_OK | os.W_OK):
        return f"permission denied on {node}: add the user to the 'video' group"
    return f"{node} exists but did not open: busy (another process) or not a capture device"
