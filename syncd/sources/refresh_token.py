"""A Salesforce refresh token that may rotate, kept in a file of its own beside the state database.

With refresh token rotation on, "the connected app issues a new refresh token along with the access token each
time the flow is invoked. The previous refresh token is automatically invalidated"
(https://help.salesforce.com/s/articleView?id=remoteaccess_oauth_refresh_token_flow.htm). The configured token
then works once; every later refresh needs the newest one, across restarts. So the newest is kept in memory and
written, before anything else happens, to `<state file>.salesforce-token` (mode 0600, replaced atomically), and
read before the configured one at the next start.

The file also records a fingerprint (SHA-256) of the configured token it descends from: when an operator
re-authorizes and configures a new token, the fingerprint no longer matches and the configured token wins.
The token itself never reaches the database, the logs or `status`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from syncd.redact import register_secret

log = logging.getLogger("syncd")


def token_file(state_path: Path) -> Path:
    """Where the rotated token of the account whose state is at `state_path` lives."""
    return state_path.with_name(state_path.name + ".salesforce-token")


class RefreshToken:
    """The refresh token to use now: the rotated one from `path` when it descends from `configured`, else the
    configured one. `rotate` records the token a refresh answer named."""

    def __init__(self, configured: str, path: Path | None = None) -> None:
        self.configured, self.path = configured, path
        self.value, self.rotated = configured, False
        if path is not None:
            self._read(path)

    @property
    def origin(self) -> str:
        """Which token is in use, in words for `syncd check` (never the token)."""
        if self.rotated and self.path is not None:
            return f"the rotated refresh token in {self.path}"
        return "the configured refresh token"

    def rotate(self, new: str) -> None:
        """Keep `new` in memory and in the file. A token that cannot be written is still used until the process
        ends, with a warning: the next start would need a new authorization."""
        register_secret(new)
        if new == self.value:
            return
        self.value, self.rotated = new, True
        if self.path is None:
            return
        body = json.dumps({"refresh_token": new, "descends_from": _fingerprint(self.configured)})
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            _sync_dir(self.path.parent)
        except OSError as exc:
            log.warning(
                "salesforce: the rotated refresh token could not be saved to %s (%s); it is kept in memory, but "
                "after a restart Salesforce will refuse the old one: fix the folder's permissions, or authorize "
                "again and configure the new token",
                self.path,
                exc.strerror or exc,
            )

    def _read(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("salesforce: %s is unreadable (%s); using the configured refresh token", path, exc)
            return
        if not isinstance(saved, dict) or not isinstance(saved.get("refresh_token"), str):
            log.warning("salesforce: %s holds no refresh token; using the configured one", path)
        elif saved.get("descends_from") == _fingerprint(self.configured):
            self.value, self.rotated = saved["refresh_token"], True
            register_secret(self.value)


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
