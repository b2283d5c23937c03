"""Secrets never reach a log, an error, status output or the database: every token is registered here when
an HTTP client is built, and `redact` replaces it wherever it appears. Kept free of heavy imports so that the
CLI can install the log filter before anything else is loaded."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_SECRETS: set[str] = set()
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api_?token|access_token|refresh_token|token|hapikey|key|secret)=)[^&\s]+")


def register_secret(value: str) -> None:
    """Make `redact` (and the log filter the CLI installs) hide this value wherever it appears."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    return _SECRET_QUERY.sub(r"\1[redacted]", text)


class RedactingFilter(logging.Filter):
    """Installed on every log handler: no secret reaches a log, whatever a message or traceback contains."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))
