"""A flow: "when this rule becomes true for a deal, create this Asana project", and the op it queues.

The op's request body and marker are built here, once, when the deal newly qualifies; they are frozen into
the ops table so that every retry and every reconcile talks about exactly the same project.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from syncd.marker import Identity
from syncd.models import Deal, NewEffect, NewOp
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
class FieldValue:
    """A custom field's configured value: one template, or a list of them (`listed`: a multi_enum's options or
    a people field's users). It is frozen as people write it (option names); the sink maps it to Asana's types
    when it sends the project, because only Asana knows the options' gids."""

    templates: tuple[Template, ...]
    listed: bool = False

    def render(self, values: Mapping[str, Any]) -> str | list[str]:
        if not self.listed:
            return _render_value(self.templates[0], values)
        out: list[str] = []
        for template in self.templates:
            rendered = _render_value(template, values)
            out += rendered if isinstance(rendered, list) else [rendered]
        return out


def _render_value(template: Template, values: Mapping[str, Any]) -> str | list[str]:
    """A template that is one list-valued deal property (a multi-select field: Pipedrive's set) renders as
    its items, one each; anything else as text."""
    if len(template.names) == 1 and template.source == f"{{{next(iter(template.names))}}}":
        value = values.get(next(iter(template.names)))
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
    return template.render(values)


@dataclass(frozen=True)
class TaskSpec:
    name: Template
    notes: Template
    assignee: str | None = None
    due_days_after_close: int | None = None


@dataclass(frozen=True)
class Flow:
    """`refire`: "once" (at most one project per deal, ever) or "per_entry" (a new project each time the deal
    re-enters the rule, each entry exactly once)."""

    name: str
    rule: Rule
    project_name: Template
    project_notes: Template
    refire: str = "once"
    template: str | None = None  # Asana project template gid
    owner: str | None = None
    due_days_after_close: int | None = None
    color: str | None = None
    privacy: str | None = None
    custom_fields: tuple[tuple[str, FieldValue], ...] = ()
    template_dates: tuple[tuple[str, Template], ...] = ()  # a template's date variable (name or gid) -> date
    template_roles: tuple[tuple[str, str], ...] = ()  # a template's role name -> a user gid, email or "me"
    tasks: tuple[TaskSpec, ...] = ()
    writeback: str | None = None  # CRM property that receives the project URL
    notify_env: str | None = None  # env var holding a Slack incoming-webhook URL
    notify_text: Template | None = None
    previous_names: tuple[str, ...] = ()  # names this flow had before: their ops and markers are its own
    enabled: bool = True  # false: deals are recorded and ops queued, but no project is created

    @property
    def names(self) -> frozenset[str]:
        """Every deal field this flow reads, so the source can ask the CRM for exactly these."""
        templates = [self.project_name, self.project_notes, *(t for _, v in self.custom_fields for t in v.templates)]
        templates += [t for _, t in self.template_dates]
        templates += [t for task in self.tasks for t in (task.name, task.notes)]
        if self.notify_text:
            templates.append(self.notify_text)
        names = self.rule.names.union(*(t.names for t in templates))
        due = self.due_days_after_close is not None or any(t.due_days_after_close is not None for t in self.tasks)
        if due or self.template:  # a template's date variables default to the close date
            names |= {"close_date"}
        return names - {"project_url"}

    def matches(self, deal: Deal) -> bool:
        return self.rule.evaluate(deal.values())


def unconfigured(ledger_flows: Iterable[str], flows: Iterable[Flow]) -> list[str]:
    """Sentences for flow names that have ops in the ledger but are in no flow's name or previous_names."""
    known = {name for flow in flows for name in (flow.name, *flow.previous_names)}
    return [
        f"flow {name!r} has projects in the ledger but is not configured: if it was renamed, add "
        f'previous_names = ["{name}"] to the new [[flow]], or syncd will treat its deals as never onboarded'
        for name in sorted(set(ledger_flows) - known)
    ]


def aliases(flow: Flow, deal: Deal, ident: Identity) -> tuple[Identity, ...]:
    """Other identities under which this project may already exist: the flow's previous names, and the deals
    the CRM merged into this one (HubSpot's `hs_merged_object_ids`)."""
    names = (flow.name, *flow.previous_names)
    found = [ident.as_flow(name) for name in names[1:]]
    found += [ident.as_deal(merged).as_flow(name) for merged in deal.merged_ids for name in names]
    return tuple(found)


def new_op(flow: Flow, deal: Deal, *, crm: str, account: str, workspace: str, team: str, entry: int = 1) -> NewOp:
    """The project op and its follow-up effects, with every body frozen now (the marker above all)."""
    values = deal.values()
    ident = Identity(crm, account, deal.id, flow.name, entry)
    mark = ident.marker
    notes = flow.project_notes.render(values).rstrip()
    name = flow.project_name.render(values)[:900] or f"Deal {deal.id}"
    body: dict[str, Any] = {
        "name": name,
        "notes": body_notes(notes, mark),
        "workspace": workspace,
        "team": team,
    }
    due = _days_after(values.get("close_date"), flow.due_days_after_close)
    optional = {"owner": flow.owner, "color": flow.color, "privacy_setting": flow.privacy, "due_on": due}
    body.update({k: v for k, v in optional.items() if v is not None})
    if flow.custom_fields:
        body["custom_fields"] = {gid: value.render(values) for gid, value in flow.custom_fields}
    key = ident.key
    effects = []
    if flow.template:
        body, then = template_body(flow, values, f"{name} {mark}", team), body
        # Instantiation cannot set notes, so the marker rides in the name (the one field the call sets) and
        # the first effect writes the notes, and what else instantiation cannot set, in one PUT once the job
        # has made the project.
        fields: dict[str, Any] = {k: then[k] for k in ("owner", "color", "due_on", "custom_fields") if k in then}
        effects.append(NewEffect(f"{key}/template", "template", {"name": name, "notes": then["notes"], **fields}))
    for index, task in enumerate(flow.tasks, 1):
        task_mark = f"[syncd-task:{key}/{index}]"
        task_body = {
            "name": task.name.render(values)[:1024] or f"Task {index}",
            "notes": f"{task.notes.render(values).rstrip()}\n\n{task_mark}".lstrip(),
            "external": {"gid": f"syncd-{_digest(key)}-{index}"},
        }
        if task.assignee:
            task_body["assignee"] = task.assignee
        if (task_due := _days_after(values.get("close_date"), task.due_days_after_close)) is not None:
            task_body["due_on"] = task_due
        effects.append(NewEffect(f"{key}/task{index}", "task", task_body))
    if flow.writeback:
        effects.append(NewEffect(f"{key}/writeback", "writeback", {"deal_id": deal.id, "property": flow.writeback}))
    if flow.notify_env and flow.notify_text:
        text = flow.notify_text.render({**values, "project_url": "{project_url}"})
        effects.append(NewEffect(f"{key}/notify", "notify", {"webhook_env": flow.notify_env, "text": text}))
    return NewOp(
        op_key=key,
        flow=flow.name,
        deal_id=deal.id,
        marker=mark,
        body=body,
        effects=tuple(effects),
        aliases=aliases(flow, deal, ident),
    )


def template_body(flow: Flow, values: Mapping[str, Any], name: str, team: str) -> dict[str, Any]:
    """The frozen instantiation: the template's date variables by name (`template_dates`, rendered now; the
    sink maps them to the template's variables and gives the rest `date_default`: the close date, or for a
    deal without one the day of the version that qualified), its roles, `is_strict` (Asana refuses a missing
    date instead of putting in today), and the custom fields, which the sink checks before the POST and the
    follow-up PUT sets."""
    close = [v for v in (values.get("close_date"), values.get("updated_at")) if isinstance(v, str) and len(v) >= 10]
    body: dict[str, Any] = {"template": flow.template, "name": name, "team": team, "is_strict": True}
    if flow.privacy:
        body["privacy_setting"] = flow.privacy
    body["template_dates"] = {var: t.render(values)[:10] or None for var, t in flow.template_dates}
    body["date_default"] = close[0][:10] if close else None
    if flow.template_roles:
        body["template_roles"] = dict(flow.template_roles)
    if flow.custom_fields:
        body["custom_fields"] = {gid: value.render(values) for gid, value in flow.custom_fields}
    return body


def body_notes(notes: str, mark: str) -> str:
    return f"{notes}\n\n{mark}" if notes else mark


def _days_after(close_date: Any, days: int | None) -> str | None:
    if days is None or not isinstance(close_date, str) or len(close_date) < 10:
        return None
    try:
        return (date.fromisoformat(close_date[:10]) + timedelta(days=days)).isoformat()
    except ValueError:
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
