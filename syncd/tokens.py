"""Where tokens come from, and what to say when one is missing or wrong.

A token is looked for in the environment (which a `.env` beside the config file fills in, without
overriding what is exported), then in a systemd credential of the same name (`$CREDENTIALS_DIRECTORY/<name>`).
Every missing one is named at once, with each place it was looked for; an exported variable that hides a
different value in `.env` is remembered, because it is the usual cause of "I fixed the token and it still
fails"; and a `.env` that other users may read is warned about, since it holds the tokens.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from dotenv import dotenv_values, load_dotenv

from syncd.errors import ConfigError

log = logging.getLogger("syncd.config")

shadowed: set[str] = set()  # exported variables whose value differs from the one in .env


def load_env_file(path: Path) -> None:
    """Fill the environment from `path` (a `.env`) without overriding exported variables."""
    shadowed.clear()
    if not path.is_file():
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s can be read by other users (mode %s) and holds tokens: run 'chmod 600 %s'.",
            path,
            stat.filemode(mode),
            path,
        )
    for name, value in dotenv_values(path).items():
        if value is not None and os.environ.get(name, value) != value:
            shadowed.add(name)
    load_dotenv(path, override=False)


def find(name: str) -> str:
    """The token's value, or "" when it is nowhere."""
    value = os.environ.get(name, "").strip()
    if not value and (creds := os.environ.get("CREDENTIALS_DIRECTORY")):
        file = Path(creds) / name
        if file.is_file():
            value = file.read_text(encoding="utf-8").strip()
    return value


def require(names: list[str], env_file: Path) -> None:
    """Raise one ConfigError naming every token in `names` that is nowhere, and where each was looked for."""
    missing = [name for name in dict.fromkeys(names) if not find(name)]
    if not missing:
        return
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    places = [
        "the environment",
        f"{env_file}" + ("" if env_file.is_file() else " (no such file)"),
        f"{creds}/<name>" if creds else "a systemd credential (CREDENTIALS_DIRECTORY is not set)",
    ]
    which = ", ".join(missing)
    raise ConfigError(
        f"{len(missing)} token variable(s) not set: {which}. Looked in {'; '.join(places)}. Put NAME=... in "
        f"the environment or in {env_file}, or store a systemd credential of that name."
    )


def shadow_note(names: list[str]) -> str:
    """A sentence for an auth error when one of `names` is exported and hides a different value in `.env`."""
    hidden = [name for name in names if name in shadowed]
    if not hidden:
        return ""
    return (
        f"Note: {', '.join(hidden)} is exported in the environment and overrides the value in .env; "
        "unset it (or fix the exported value) to use the one in .env."
    )
