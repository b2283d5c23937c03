"""A flow: "when this rule becomes true for a deal, create this Asana project", and the op it queues.

The op's request body and marker are built here, once, when the deal newly qualifies; they are frozen into
the ops table so that every retry and every reconcile talks about exactly the same project.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncd.models import Deal, NewOp
from syncd.rules import Rule

NORMALISED = ("id", "name", "stage", "amount", "close_date", "pipeline", "owner", "updated_at")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    source: str
    names: frozenset[str]

    @classmethod
    def parse(cls, source: str) -> Template:
        names = set()
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise TemplateError(f"{exc}; write a literal brace as '{{{{' or '}}}}'") from None
        for _, field_name, _, _ in parsed:
            if field_name is None:
                continue
            if not field_name.isidentifier():
                raise TemplateError(f"'{{{field_name}}}' is not a field name; use e.g. {{name}} or {{amount}}")
            names.add(field_name)
        return cls(source, frozenset(names))

    def render(self, values: Mapping[str, Any]) -> str:
        """Total: a missing or None value renders as '', a value its format spec cannot take renders plain."""
        out = []
        for literal, field_name, spec, conversion in string.Formatter().parse(self.source):
            out.append(literal)
            if field_name is None:
                continue
            value = values.get(field_name)
            if value is None:
                continue
            if conversion == "r":
                value = repr(value)
            try:
                out.append(format(value, spec or ""))
            except (ValueError, TypeError):
                out.append(str(value))
        return "".join(out)


@dataclass(frozen=True)
class Flow:
    name: str
    rule: Rule
    project_name: Template
    project_notes: Template

    @property
    def names(self) -> frozenset[str]:
        """Every deal field this flow reads, so the source can ask the CRM for exactly these."""
        return self.rule.names | self.project_name.names | self.project_notes.names

    def matches(self, deal: Deal) -> bool:
        return self.rule.evaluate(deal.values())


def marker(crm: str, account: str, deal_id: str, flow: str) -> str:
    return f"[syncd:{crm}:{account}:{deal_id}:{flow}]"


def new_op(flow: Flow, deal: Deal, *, crm: str, account: str, workspace: str, team: str) -> NewOp:
    values = deal.values()
    mark = marker(crm, account, deal.id, flow.name)
    notes = flow.project_notes.render(values).rstrip()
    body = {
        "name": flow.project_name.render(values)[:1024] or f"Deal {deal.id}",
        "notes": f"{notes}\n\n{mark}" if notes else mark,
        "workspace": workspace,
        "team": team,
    }
    return NewOp(
        op_key=f"{flow.name}:{crm}:{account}:{deal.id}", flow=flow.name, deal_id=deal.id, marker=mark, body=body
    )
