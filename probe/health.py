"""Health of a running probe: a file the probe rewrites every second, and its check.

The delivery process rewrites ``DATA_DIR/health.json`` after every alert evaluation
(atomically: write a temporary file, then rename). The evaluation runs in an actor, so
the file goes stale when the actor tree stops making progress, not only when the process
dies. ``python -m probe health`` reads it; it needs no socket, no port and no running
server of its own, works for any user who can read the data directory, and cannot hang
on a wedged probe (it only reads a file). It is unhealthy when the file is missing, its
process is gone, it is older than ``3 x interval`` (at least 5 s), or it says the probe
stopped, failed or halted transmission.

Under systemd (``Type=notify``), the same rewrite sends ``READY=1`` once and
``WATCHDOG=1`` each time, so a hung probe is restarted by ``WatchdogSec=``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

HEALTH_FILE = "health.json"
#: statuses a service manager should treat as healthy
HEALTHY = ("ok", "degraded")


def health_path(data_dir: str) -> str:
    return os.path.join(data_dir, HEALTH_FILE)


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd's notification socket, if the probe runs under one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


class HealthWriter:
    """Rewrites the health file; tells systemd the probe is ready and alive."""

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._ready_sent = False

    def write(self, doc: dict[str, Any]) -> None:
        doc = {**doc, "time": time.time(), "pid": os.getpid(), "interval": self.interval}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh, sort_keys=True)
        os.replace(tmp, self.path)
        if doc.get("status") in HEALTHY:
            if not self._ready_sent:
                self._ready_sent = sd_notify("READY=1")
            sd_notify("WATCHDOG=1")
        elif doc.get("status") == "stopped":
            sd_notify("STOPPING=1")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def check_health(data_dir: str, now: float | None = None) -> tuple[bool, str, dict[str, Any] | None]:
    """(healthy, one-line reason, the health document) of the probe using ``data_dir``."""
    path = health_path(data_dir)
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return False, f"not running: no {path}", None
    except (OSError, ValueError) as exc:
        return False, f"unreadable health file {path}: {exc}", None
    if not isinstance(doc, dict) or not isinstance(doc.get("time"), (int, float)) or not isinstance(doc.get("pid"), int):
        return False, f"malformed health file {path}", None
    now = time.time() if now is None else now
    status = doc.get("status")
    who = f"probe {doc.get('probe_id', '?')} (pid {doc['pid']})"
    if status == "stopped":
        return False, f"not running: {who} stopped at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(doc['time']))}", doc
    if status == "failed":
        return False, f"failed: {who}: {doc.get('fatal') or 'see the log'}", doc
    if not _process_alive(doc["pid"]):
        return False, f"not running: {who} is gone without stopping cleanly", doc
    age = now - doc["time"]
    limit = max(5.0, 3 * float(doc.get("interval") or 1.0))
    if age > limit:
        return False, f"not responding: {who} last reported {age:.0f} s ago (limit {limit:g} s)", doc
    if status == "halted":
        return False, f"transmission halted: {who}: {doc.get('halt_reason') or 'identity failure'}", doc
    alerts = doc.get("alerts") or []
    uplink = doc.get("uplink") or "unknown"
    detail = f"{who} running, uplink {uplink}, {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
    if alerts:
        detail += ": " + ", ".join(alerts)
    if status not in HEALTHY:
        return False, f"unknown status {status!r}: {detail}", doc
    return True, f"{status}: {detail}", doc
