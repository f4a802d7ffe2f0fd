"""systemd ``Type=notify`` + ``WatchdogSec=``: the sd_notify datagram protocol, stdlib only.

systemd passes ``$NOTIFY_SOCKET`` (a UNIX datagram socket path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``. We send ``READY=1`` once the first
frame has been processed (so ``systemctl start`` returns when results really flow), and
``WATCHDOG=1`` only while new frames keep being processed: a camera that stalls (or a source
that stays down) stops the pings, and systemd restarts the service after ``WatchdogSec``.
Without ``$NOTIFY_SOCKET`` (not under systemd) everything here is a no-op.
Device side: Python 3.8, stdlib only.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, Optional

from edge_resnet.runtime.telemetry import PipelineMetrics

__all__ = ["SystemdNotifier", "ServiceHealth"]

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; silent when it is unset."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or ""
        self.address: Optional[str] = ("\0" + address[1:]) if address.startswith("@") \
            else (address or None)
        self.watchdog_s: Optional[float] = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (logged) when it cannot be sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode("utf-8"), self.address)
            return True
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
            return False


class ServiceHealth:
    """Turns pipeline progress into READY/WATCHDOG/STATUS notifications; call :meth:`tick`
    often (the service loop does, every 0.2 s)."""

    def __init__(self, metrics: PipelineMetrics, notifier: Optional[SystemdNotifier] = None
                 ) -> None:
        self.metrics = metrics
        self.notifier = notifier or SystemdNotifier()
        self.ready = False
        self._last_ping = 0.0
        self._processed_at_ping = -1

    def tick(self) -> None:
        if not self.notifier.enabled:
            return
        processed = self.metrics.counts()["processed"]
        if not self.ready and processed > 0:
            self.ready = self.notifier.notify("READY=1", "STATUS=processing frames")
        watchdog = self.notifier.watchdog_s
        now = time.monotonic()
        if not self.ready or watchdog is None or now - self._last_ping < watchdog / 3:
            return
        if processed > self._processed_at_ping and self.metrics.source_up:
            self.notifier.notify("WATCHDOG=1")
            self._last_ping, self._processed_at_ping = now, processed
        elif now - self._last_ping >= watchdog / 3:
            # no new result since the last ping: withhold it, say why (systemctl status shows it)
            self.notifier.notify("STATUS=no new frames; watchdog ping withheld")
            self._last_ping = now

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=draining and stopping")
