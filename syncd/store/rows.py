"""Rows of the ledger's tables (from either backend) as the frozen dataclasses the engine works with."""

from __future__ import annotations

import json
from typing import Any

from syncd.models import Effect, Op, State
from syncd.store.scope import Row


def op_of(row: Row) -> Op:
    return Op(
        op_key=row["op_key"],
        flow=row["flow"],
        deal_id=row["deal_id"],
        state=State(row["state"]),
        marker=row["marker"],
        body=json.loads(row["body"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        asana_gid=row["asana_gid"],
        asana_url=row["asana_url"],
        last_error=row["last_error"],
        aliases=tuple(json.loads(row["aliases"])),
        team=_team(json.loads(row["body"])),
    )


def _team(body: dict[str, Any]) -> str | None:
    team = body.get("team")
    return team if isinstance(team, str) else None


def effect_of(r: Row) -> Effect:
    return Effect(
        effect_key=r["effect_key"],
        op_key=r["op_key"],
        kind=r["kind"],
        state=State(r["state"]),
        body=json.loads(r["body"]),
        attempts=r["attempts"],
        deal_id=r["deal_id"],
        asana_gid=r["asana_gid"],
        asana_url=r["asana_url"],
        job_gid=r["job_gid"],
    )
