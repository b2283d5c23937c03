"""What a flow's configured values mean to Asana: custom field values by their field's type, and a project
template's date variables and roles by name. Pure: the sink reads the definitions (`GET /custom_fields/{gid}`,
`GET /project_templates/{gid}`) and hands them here.

Custom field values (the custom fields guide, https://developers.asana.com/docs/custom-fields-guide, and the
OpenAPI file's `ProjectRequest.custom_fields`): an `enum` takes the gid of one of its enum options, a
`multi_enum` a list of option gids, a `number` a JSON number, a `date` `{"date": "YYYY-MM-DD"}`, a `people`
field a list of users (gids, emails or "me"), a `text` field its text. A multi_enum or people value is a list,
or one text separated by commas or semicolons (HubSpot sends multiple checkboxes as "a;b"). Asana answers a
label where a gid is required with a 400, so a flow names an option by the **name** people see in Asana and
syncd sends its gid.
A name matches exactly, else ignoring case; a disabled option ("trashed" in Asana's words) is not selectable.

A value that cannot be mapped (no such option, not a number, not a date, a field syncd cannot set) raises
`Unmapped` before anything is sent: the op becomes dead with the sentence, `syncd check` reports the same
sentence, and `syncd retry` sends the op again once the config (or the field's options) are fixed.

Templates (`ProjectTemplateInstantiateProjectRequest`): `requested_dates` maps each of the template's date
variables (`{gid, name}`; gid "1" is the start date, "2" the due date) to a calendar date; with `is_strict`
Asana refuses an instantiation that leaves one out. `requested_roles` maps template roles to users.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from syncd.errors import RejectedError

FIELD_OPT_FIELDS = "name,resource_subtype,enum_options,enum_options.name,enum_options.enabled"
TEMPLATE_OPT_FIELDS = "name,requested_dates,requested_dates.name,requested_roles,requested_roles.name"
SETTABLE = ("text", "number", "enum", "multi_enum", "date", "people")
Raw = str | list[str]


class Unmapped(RejectedError):
    """A configured value has no counterpart in Asana (an option, a date variable, a role): nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, service="asana", status=None)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' Did you mean "X"?' for the closest known name, or ''."""
    by_fold = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(name.casefold(), list(by_fold), n=1, cutoff=0.6)
    return f' Did you mean "{by_fold[close[0]]}"?' if close else ""


def _by_name(name: str, items: Iterable[tuple[str, str]]) -> str | None:
    """The gid of the item called `name`: exactly, else the one item whose name matches ignoring case."""
    items = list(items)
    if exact := [gid for gid, n in items if n == name]:
        return exact[0]
    folded = [gid for gid, n in items if n.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


@dataclass(frozen=True)
class Option:
    gid: str
    name: str
    enabled: bool


@dataclass(frozen=True)
class CustomField:
    """One custom field's definition, as `GET /custom_fields/{gid}` answers it."""

    gid: str
    name: str
    subtype: str
    options: tuple[Option, ...] = ()

    @classmethod
    def from_data(cls, data: Any, gid: str) -> CustomField:
        data = data if isinstance(data, dict) else {}
        options = tuple(
            Option(str(o["gid"]), str(o.get("name", "")), o.get("enabled", True) is not False)
            for o in data.get("enum_options") or []
            if isinstance(o, dict) and isinstance(o.get("gid"), str)
        )
        subtype = data.get("resource_subtype") or data.get("type") or "unknown"
        return cls(gid, str(data.get("name", "?")), str(subtype), options)

    def label(self, key: str) -> str:
        return f'{key} "{self.gid}" (the {self.subtype} field "{self.name}")'

    def value(self, raw: Raw, key: str) -> Any:
        """What Asana takes for `raw` (a rendered template, or a list of them); None: leave the field unset.
        Raises Unmapped with a sentence naming `key`, the value and the fix."""
        parts = [p.strip() for p in (raw if isinstance(raw, list) else [raw])]
        if self.subtype in ("multi_enum", "people") and not isinstance(raw, list):
            parts = [p.strip() for p in re.split(r"[,;]", raw)]  # HubSpot's multiple checkboxes: "a;b"
        parts = [p for p in parts if p]
        if not parts:
            return None
        if self.subtype not in SETTABLE:
            raise Unmapped(f"{self.label(key)}: syncd cannot set a {self.subtype} field. Remove it from {key}.")
        if self.subtype == "text":
            return ", ".join(parts)
        if self.subtype == "people":
            return parts
        if self.subtype == "multi_enum":
            return [self._option(p, key) for p in parts]
        if len(parts) > 1:
            raise Unmapped(f"{self.label(key)} = {raw!r}: the field takes one value. Give it one {key} value.")
        (one,) = parts
        if self.subtype == "enum":
            return self._option(one, key)
        if self.subtype == "number":
            return _number(one, f"{self.label(key)} = {one!r}: not a number. Make the template render a number.")
        try:
            return {"date": date.fromisoformat(one[:10]).isoformat()}
        except ValueError:
            raise Unmapped(
                f"{self.label(key)} = {one!r}: not a date. Make the template render a date (YYYY-MM-DD)."
            ) from None

    def _option(self, name: str, key: str) -> str:
        enabled = [(o.gid, o.name) for o in self.options if o.enabled]
        if (gid := _by_name(name, enabled)) is not None:
            return gid
        names = [n for _, n in enabled]
        if _by_name(name, [(o.gid, o.name) for o in self.options if not o.enabled]) is not None:
            why = "that option is disabled in Asana"
        else:
            why = f"the field has no option of that name.{did_you_mean(name, names)}"
        raise Unmapped(
            f'{self.label(key)} = "{name}": {why} Its options are: {", ".join(names) or "(none)"}. '
            f"Fix the value in {key}, or add or enable the option in Asana; then 'syncd retry' the deal."
        )


def _number(text: str, problem: str) -> int | float:
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        raise Unmapped(problem) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise Unmapped(problem)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


@dataclass(frozen=True)
class ProjectTemplate:
    """One project template's date variables and roles, as `GET /project_templates/{gid}` answers them."""

    gid: str
    name: str
    dates: tuple[tuple[str, str], ...]  # (gid, name)
    roles: tuple[tuple[str, str], ...]

    @classmethod
    def from_data(cls, data: Any, gid: str) -> ProjectTemplate:
        data = data if isinstance(data, dict) else {}

        def pairs(key: str) -> tuple[tuple[str, str], ...]:
            items = data.get(key) or []
            return tuple((str(i["gid"]), str(i.get("name", ""))) for i in items if isinstance(i, dict) and "gid" in i)

        return cls(gid, str(data.get("name", "?")), pairs("requested_dates"), pairs("requested_roles"))

    def _find(self, kind: str, key: str, given: str, items: tuple[tuple[str, str], ...]) -> str:
        if gid := (_by_name(given, items) or next((g for g, _ in items if g == given), None)):
            return gid
        names = [n for _, n in items]
        raise Unmapped(
            f'{key} "{given}": template {self.gid} ("{self.name}") has no {kind} of that name.'
            f"{did_you_mean(given, names)} Its {kind}s are: {', '.join(names) or '(none)'}. Fix {key}."
        )

    def requested_dates(self, given: Mapping[str, str | None], default: str | None) -> list[dict[str, str]]:
        """A date for every date variable: the one `given` names (by name or gid), else `default`."""
        key = "[flow.project] template_dates"
        values = {self._find("date variable", key, k, self.dates): v for k, v in given.items() if v}
        out = []
        for gid, name in self.dates:
            value = values.get(gid) or default
            if not value:
                raise Unmapped(
                    f'template {self.gid} ("{self.name}") needs a date for its date variable "{name}", and this '
                    f"deal gives none (no close date, and {key} names none for it). Add it to {key}."
                )
            try:
                out.append({"gid": gid, "value": date.fromisoformat(value[:10]).isoformat()})
            except ValueError:
                raise Unmapped(f'{key} "{name}" = {value!r}: not a date (YYYY-MM-DD). Fix {key}.') from None
        return out

    def requested_roles(self, given: Mapping[str, str]) -> list[dict[str, str]]:
        key = "[flow.project] template_roles"
        return [{"gid": self._find("role", key, k, self.roles), "value": v} for k, v in given.items()]
