"""The sd_notify protocol, without a dependency: tell systemd we are ready, healthy, busy or stopping.

One datagram per message to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a leading `@` means the abstract
namespace), as in systemd's own `man/notify-selfcontained-example.py`. Every function is a no-op when the
variable is unset (not started by systemd, or by a unit that is not `Type=notify`), and none ever raises: a
broken socket must not take the daemon down, so the first failure is logged at debug and later ones are
silent. The environment is read on every call.

    ready()                  READY=1: startup is done (Type=notify units count as started from here)
    status(line)             STATUS=...: one line for `systemctl status`
    watchdog()               WATCHDOG=1: the work loop is healthy (see daemon.py for when that is true)
    reloading() / stopping() RELOADING=1 (+ MONOTONIC_USEC) / STOPPING=1
    watchdog_timeout()       the unit's WatchdogSec= in seconds, or None when this process is not watched
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("syncd.notify")

_failed: list[str] = []  # the first failure, so it is logged once


def send(*assignments: str) -> bool:
    """Send `assignments` ("READY=1", ...) as one message. True when systemd was told, False otherwise."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        if not address.startswith(("/", "\0")):
            raise OSError(f"unsupported socket address {address!r}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as exc:
        if not _failed:
            _failed.append(str(exc))
            log.debug("sd_notify to %r failed (%s); further failures are not logged", address, exc)
        return False
    return True


def ready() -> bool:
    return send("READY=1")


def status(line: str) -> bool:
    """`STATUS=`: one line, so newlines become spaces; systemd shows it in `systemctl status`."""
    return send("STATUS=" + " ".join(line.split())[:400])


def watchdog() -> bool:
    return send("WATCHDOG=1")


def reloading() -> bool:
    """`RELOADING=1`; systemd 253+ wants the monotonic time with it, older versions ignore the extra field.
    Send `ready()` when the reload is over."""
    return send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> bool:
    return send("STOPPING=1")


def watchdog_timeout() -> float | None:
    """`$WATCHDOG_USEC` in seconds when it is set for this process (`$WATCHDOG_PID`, when present, must be our
    pid: the variables leak into children otherwise); None when the watchdog is off. Ping at half of it."""
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
