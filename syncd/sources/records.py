"""What every source does with a CRM record, in one place: exact timestamps, text, the normalised `Deal`, and
the quarantine (with a bounded excerpt) of a record that cannot be trusted. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.models import Deal, Quarantined

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


def parse_records(
    records: list[Any], parse: Callable[[Any], Deal], id_key: str = "id"
) -> tuple[list[Deal], list[Quarantined]]:
    """`parse` each record; a record it rejects (ValueError, with the reason) is quarantined under its `id_key`."""
    deals, quarantined = [], []
    for record in records:
        try:
            deals.append(parse(record))
        except ValueError as exc:
            record_id = record.get(id_key) if isinstance(record, dict) else None
            quarantined.append(
                Quarantined(None if record_id is None else str(record_id)[:64], str(exc), excerpt(record))
            )
    return deals, quarantined


def deal_from(
    deal_id: str,
    updated_at_ms: int,
    values: Mapping[str, Any],
    columns: Mapping[str, str],
    amount: float | None,
    *,
    created_at_ms: int | None = None,
    merged_ids: tuple[str, ...] = (),
) -> Deal:
    """The normalised Deal of a record whose `values` the source has checked: `columns` names the CRM's field
    for each normalised one (one it has no field for is None), read as text; `amount` is as the source read
    it; `values` are the deal's properties; the creation time and merged deals as the CRM reports them."""

    def column(name: str) -> str | None:
        return text(values.get(columns[name])) if name in columns else None

    return Deal(
        id=deal_id,
        updated_at_ms=updated_at_ms,
        name=column("name"),
        stage=column("stage"),
        amount=amount,
        close_date=column("close_date"),
        pipeline=column("pipeline"),
        owner=column("owner"),
        properties=values,
        created_at_ms=created_at_ms,
        merged_ids=merged_ids,
    )
