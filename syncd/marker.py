"""The one definition of a marker: how syncd names an op and finds its project again. Pure.

Asana has no idempotency key, so each project carries a marker in its notes (or, for a template, its name):
`[syncd:<crm>:<account>:<deal>:<flow>]`, with `#<entry>` after the flow for the second and later entries of
a `per_entry` flow. Accounts and flow names are restricted to `NAME` so that a marker is one token that
`MARKER` always finds again; deal ids are the CRM's (digits, or Salesforce's 18 characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"[A-Za-z0-9._-]+")
NAME_RULE = "letters, digits, '.', '-' and '_' only"
MARKER = re.compile(r"\[syncd:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[^\]\s:]+:[A-Za-z0-9._-]+(?:#\d+)?\]")


@dataclass(frozen=True)
class Identity:
    """Which project an op stands for: one per (CRM, account, deal, flow, entry)."""

    crm: str
    account: str
    deal_id: str
    flow: str
    entry: int = 1

    @property
    def suffix(self) -> str:
        return "" if self.entry == 1 else f"#{self.entry}"

    @property
    def marker(self) -> str:
        return f"[syncd:{self.crm}:{self.account}:{self.deal_id}:{self.flow}{self.suffix}]"

    @property
    def key(self) -> str:
        """The op's primary key in the ledger."""
        return f"{self.flow}:{self.crm}:{self.account}:{self.deal_id}{self.suffix}"

    def as_flow(self, flow: str) -> Identity:
        return Identity(self.crm, self.account, self.deal_id, flow, self.entry)

    def as_deal(self, deal_id: str) -> Identity:
        return Identity(self.crm, self.account, deal_id, self.flow, self.entry)


def markers_in(text: str) -> set[str]:
    return set(MARKER.findall(text))


def without_markers(text: str) -> str:
    return MARKER.sub("", text).strip()
