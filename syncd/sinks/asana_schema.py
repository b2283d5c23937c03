"""The Asana definitions syncd's flows depend on, read once and kept: custom fields (`GET /custom_fields/{gid}`)
and project templates (`GET /project_templates/{gid}`).

Why kept: every project of a flow sets the same fields from the same template, so one reading per process
serves them all; it is read again after `ttl` seconds (an hour), and at once (at most every `reread_after`
seconds) when a value names an option the kept reading does not have: it may have been added since.

`Schema.project_fields` and `Schema.instantiation` turn a frozen op body into what Asana takes, and raise
`Unmapped` (nothing sent) when that cannot be done; `findings` is the same judgement for `syncd check`, over
the flows instead of one deal.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from syncd.errors import RejectedError
from syncd.sinks.asana_fields import (
    FIELD_OPT_FIELDS,
    TEMPLATE_OPT_FIELDS,
    CustomField,
    ProjectTemplate,
    Raw,
    Unmapped,
)

if TYPE_CHECKING:
    from syncd.flows import Flow

Get = Callable[[str, dict[str, Any]], Any]  # (path, params) -> the answer's `data`
FIELDS_KEY = "[flow.project] custom_fields"
TEMPLATE_KEYS = ("name", "team", "privacy_setting", "is_strict")  # sent as they are frozen


class Schema:
    def __init__(self, get: Get, timer: Callable[[], float], *, ttl: float = 3600.0, reread_after: float = 60.0):
        self.get, self.timer, self.ttl, self.reread_after = get, timer, ttl, reread_after
        self._fields: dict[str, tuple[CustomField, float]] = {}
        self._templates: dict[str, tuple[ProjectTemplate, float]] = {}

    def field(self, gid: str, *, refresh: bool = False) -> CustomField:
        now = self.timer()
        kept = self._fields.get(gid)
        if kept is None or refresh or now - kept[1] >= self.ttl:
            data = self._read(f"/custom_fields/{gid}", FIELD_OPT_FIELDS, f'{FIELDS_KEY} "{gid}"', "custom field")
            kept = self._fields[gid] = (CustomField.from_data(data, gid), now)
        return kept[0]

    def template(self, gid: str) -> ProjectTemplate:
        now = self.timer()
        kept = self._templates.get(gid)
        if kept is None or now - kept[1] >= self.ttl:
            data = self._read(f"/project_templates/{gid}", TEMPLATE_OPT_FIELDS, "[flow.project] template", "template")
            kept = self._templates[gid] = (ProjectTemplate.from_data(data, gid), now)
        return kept[0]

    def _read(self, path: str, opt_fields: str, key: str, kind: str) -> Any:
        try:
            return self.get(path, {"opt_fields": opt_fields})
        except RejectedError as exc:
            if exc.status not in (400, 404):
                raise
            gid = path.rsplit("/", 1)[-1]
            raise Unmapped(
                f"{key}: Asana has no {kind} {gid} that this token can see ({exc}). "
                f"Copy the {kind}'s gid from Asana into {key}."
            ) from exc

    def value(self, gid: str, raw: Raw, key: str = FIELDS_KEY) -> Any:
        """`raw` as Asana's type for field `gid`; an unmappable value is judged again on a fresh reading."""
        field = self.field(gid)
        try:
            return field.value(raw, key)
        except Unmapped:
            if self.timer() - self._fields[gid][1] < self.reread_after:
                raise
            return self.field(gid, refresh=True).value(raw, key)

    def project_fields(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A project body with its custom field values (frozen as people write them) in Asana's types; a
        value that renders empty leaves its field unset."""
        fields = dict(body)
        if isinstance(custom := body.get("custom_fields"), dict):
            typed = {gid: self.value(gid, raw) for gid, raw in custom.items()}
            fields["custom_fields"] = {gid: v for gid, v in typed.items() if v is not None}
            if not fields["custom_fields"]:
                del fields["custom_fields"]
        return fields

    def instantiation(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The `instantiateProject` data for a frozen template op body: its date variables from
        `template_dates` (default: `date_default`, the close date), its roles from `template_roles`, and its
        custom fields checked now (the follow-up PUT sets them), so a bad value stops the op before the POST."""
        data = {k: body[k] for k in TEMPLATE_KEYS if k in body}
        if "requested_dates" in body:  # frozen before syncd read the template's date variables
            return {**data, "requested_dates": body["requested_dates"]}
        template = self.template(str(body["template"]))
        data["requested_dates"] = template.requested_dates(body.get("template_dates") or {}, body.get("date_default"))
        if roles := template.requested_roles(body.get("template_roles") or {}):
            data["requested_roles"] = roles
        self.project_fields({"custom_fields": body.get("custom_fields")})
        return data

    def findings(self, flows: Iterable[Flow], choices: Mapping[str, Iterable[str]]) -> list[str]:
        """`syncd check`: one sentence per problem, naming the flow, the key and the fix. A literal value is
        judged as it is; a value that is one deal property (`"{tier}"`) is judged for each of the property's
        `choices` (e.g. the CRM's declared options) when the caller knows them."""
        problems: list[str] = []
        for flow in flows:
            where = f"[flow {flow.name!r} project]"

            for gid, value in flow.custom_fields:
                for raw in _samples(value.templates, value.listed, choices):
                    problems += _unmapped(where, self.value, gid, raw)
            if flow.template:
                problems += _unmapped(where, self._check_template, flow)
        return list(dict.fromkeys(problems))

    def _check_template(self, flow: Flow) -> None:
        """Every name in template_dates and template_roles is the template's; every date variable has a
        date (a placeholder stands in for the deal's)."""
        template = self.template(str(flow.template))
        template.requested_dates({name: "2000-01-01" for name, _ in flow.template_dates}, "2000-01-01")
        template.requested_roles(dict(flow.template_roles))


def _unmapped(where: str, call: Callable[..., object], *args: Any) -> list[str]:
    """The sentence `call(*args)` raises as Unmapped, said of the flow at `where`; [] when it maps."""
    try:
        call(*args)
    except Unmapped as exc:
        return [f"{where} {str(exc).removeprefix('[flow.project] ')}".replace("[flow.project] ", "")]
    return []


def _samples(templates: Iterable[Any], listed: bool, choices: Mapping[str, Iterable[str]]) -> list[Raw]:
    """The values a configured field value can take that can be known without a deal."""
    sources = [t.source for t in templates]
    if all(not t.names for t in templates):
        return [sources if listed else sources[0]]
    if not listed and len(sources) == 1:
        parsed = list(string.Formatter().parse(sources[0]))
        if len(parsed) == 1 and not parsed[0][0] and parsed[0][1] in choices and not parsed[0][2]:
            return [str(c) for c in choices[str(parsed[0][1])]]
    return []
