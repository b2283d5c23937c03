"""What went wrong with the database file, told apart by cause: the disk (a full disk, an I/O error, a folder
syncd may not write) or the file itself. The sentence for each says what to do, and never advises a restore
without saying that it is safe and what it costs."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from syncd.errors import StoreError


def is_storage(exc: sqlite3.Error) -> bool:
    """The disk, not the database: SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, a read-only file."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return code.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")) or any(
        words in text for words in ("disk", "unable to open", "readonly")
    )


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """A sentence for what went wrong with the database file, told apart by cause: the disk (say so, with the
    free space) or the file itself (say what a restore costs, and that it is safe)."""
    if is_storage(exc):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:,.1f} MB free on its file system"
        except OSError:
            free = "free space unknown"
        return StoreError(
            f"Could not write {path}: {exc} ({free}). Nothing was lost: what syncd committed before is intact. "
            "Free some space (or fix the disk or the folder's permissions), then run syncd again."
        )
    return StoreError(
        f"{path} is not a usable syncd database ({exc}). Restoring a backup is safe (syncd checks Asana before "
        "it creates any project) but forgets the cycles since the backup; or point [state] path at a new file, "
        "which starts with a baseline."
    )
