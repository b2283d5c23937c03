"""The fake Asana's custom fields: definitions with enum options, and the values a project's `custom_fields`
may carry, checked as Asana checks them.

Written from Asana's OpenAPI file (`CustomFieldBase`, `EnumOption`, `ProjectRequest.custom_fields`) and the
custom fields guide (https://developers.asana.com/docs/custom-fields-guide):
- "each key is the GID of a custom field and its corresponding value is either an enum GID, string, number, or
  object (depending on the custom field type)": an `enum` takes an option's gid, a `multi_enum` a list of them,
  a `number` a number, a `text` a string, a `date` `{"date": "YYYY-MM-DD"}` (the spec's description also
  shows a plain "YYYY-MM-DD" string; both are accepted), a `people` field a list of users (gids, emails, "me");
- enum options are never deleted, only disabled (`enabled: false`: "no longer selectable");
- a value of the wrong kind is a 400 in Asana's error shape. The words are a (guess): Asana documents the
  status, not the message, so the fake says "custom_fields: Not a recognized ID: <value>" for a label where an
  option gid is required, in the form of Asana's other unknown-id errors.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

SUBTYPES = ("text", "enum", "multi_enum", "number", "date", "people")


def definition(gid: str, name: str, subtype: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """A custom field as `GET /custom_fields/{gid}` returns it (CustomFieldResponse)."""
    field: dict[str, Any] = {
        "gid": gid,
        "resource_type": "custom_field",
        "name": name,
        "resource_subtype": subtype,
        "type": subtype,  # deprecated twin of resource_subtype, still returned
        "description": "",
        "is_global_to_workspace": True,
        "has_notifications_enabled": True,
        "representation_type": subtype,
    }
    if subtype in ("enum", "multi_enum"):
        field["enum_options"] = options
    if subtype == "number":
        field["precision"] = 0
    return field


def is_date(value: Any) -> bool:
    """A `YYYY-MM-DD` calendar date, as Asana's date fields take them."""
    if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value)):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def value_of(field: dict[str, Any], value: Any) -> dict[str, Any] | str:
    """The stored value of `field` set to `value` (a custom field value object), or the error message."""
    subtype, gid = field["resource_subtype"], field["gid"]
    stored: dict[str, Any] = {"gid": gid, "resource_type": "custom_field", "name": field["name"]}
    stored |= {"resource_subtype": subtype, "type": subtype, "enabled": True}
    options = {o["gid"]: o for o in field.get("enum_options", [])}
    if value is None:
        return {**stored, "display_value": None}
    if subtype == "enum":
        if not isinstance(value, str) or value not in options:
            return f"custom_fields: Not a recognized ID: {value}"
        if not options[value]["enabled"]:
            return f"custom_fields: Enum option is disabled: {value}"
        return {**stored, "enum_value": options[value], "display_value": options[value]["name"]}
    if subtype == "multi_enum":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"custom_fields: Value is not an array: {value}"
        if unknown := [v for v in value if v not in options or not options[v]["enabled"]]:
            return f"custom_fields: Not a recognized ID: {unknown[0]}"
        chosen = [options[v] for v in value]
        return {**stored, "multi_enum_values": chosen, "display_value": ", ".join(o["name"] for o in chosen)}
    if subtype == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"custom_fields: Number value is not a number: {value}"
        return {**stored, "number_value": value, "display_value": str(value)}
    if subtype == "date":
        day = value.get("date") if isinstance(value, dict) else value
        if not is_date(day):
            return f"custom_fields: Invalid date: {value}"
        return {**stored, "date_value": {"date": day, "date_time": None}, "display_value": day}
    if subtype == "people":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"custom_fields: Value is not an array: {value}"
        people = [{"gid": v, "resource_type": "user"} for v in value]
        return {**stored, "people_value": people, "display_value": ", ".join(value)}
    if not isinstance(value, str):
        return f"custom_fields: Text value is not a string: {value}"
    return {**stored, "text_value": value, "display_value": value}
