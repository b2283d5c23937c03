"""The single-instance lock: an exclusive `flock` on `<database>.lock`, taken before anything else is loaded.

Why a separate file and not the database: a POSIX lock on the SQLite file itself would be dropped by any
`close()` of that file in the process. Why so early and so light: a second `syncd` (cron while the service
runs) must exit 75 in a fraction of a second, before it imports the HTTP stack. The kernel releases the lock
when the holder dies, even on `kill -9`: there are no stale lock files to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from syncd.errors import LockHeld, StoreError


def acquire(database: Path) -> int:
    """Take the lock for `database`; return the descriptor that holds it. Raises LockHeld (exit 75)."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(
            f"Could not create {database}.lock ({exc.strerror}): syncd keeps its database and lock in "
            f"{database.parent}. Let the user running syncd write there, or point [state] path at a folder it "
            "may write."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(
            f"Another syncd is using {database} (it holds {database}.lock). This run did nothing; "
            "the next one will pick up the work."
        ) from None
    return fd


def release(fd: int) -> None:
    os.close(fd)
