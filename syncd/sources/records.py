"""What every source does with a CRM record, in one place: exact timestamps, text, and a bounded excerpt for
the quarantine. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXCERPT_CHARS = 2000


def iso_ms(value: Any) -> int | None:
    """ISO 8601 / RFC 3339 ('2024-09-13T20:23:03.333Z', '+0000' and '+00:00' offsets, a space instead of the
    'T') -> epoch ms, exact to the millisecond (no float rounding). A value without an offset is UTC. None
    when it is not such a timestamp or is before 1970."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - EPOCH
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    return ms if ms >= 0 else None


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def excerpt(record: Any) -> str:
    """A bounded, ASCII-safe copy of a record for the operator (invalid UTF-8 and huge strings included)."""
    try:
        return json.dumps(record, ensure_ascii=True, default=str)[:EXCERPT_CHARS]
    except (TypeError, ValueError):
        return repr(record)[:EXCERPT_CHARS]
