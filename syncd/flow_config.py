"""The [[flow]] tables of config.toml -> `Flow`s; their keys are declared as `syncd.config_keys.Key`s.

A flow's sub-tables ([flow.project], [[flow.tasks]], [flow.writeback], [flow.notify]) are keys of [[flow]]
whose check reads the sub-table's own keys, so that every message names the flow: "[flow 'onboarding' project]".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd import rules
from syncd.config_keys import REQUIRED, Key, Site, check_keys, one_of, read_key, read_table
from syncd.errors import ConfigError
from syncd.flows import FieldValue, Flow, TaskSpec, Template, TemplateError
from syncd.marker import NAME, NAME_RULE

_HUES = ("pink", "green", "blue", "red", "teal", "brown", "orange", "purple", "warm-gray")
ASANA_COLORS = (*(f"{shade}-{hue}" for shade in ("dark", "light") for hue in _HUES), "none")
ASANA_PRIVACY = ("public_to_workspace", "private_to_team", "private")


def parse_flows(flows: Any, path: Path) -> tuple[Flow, ...]:
    """Every [[flow]], checked; their names must differ, since each is part of the marker in its projects."""
    if not flows:
        raise ConfigError(
            f"{path} [flow]: no [[flow]] is configured, so syncd would never create a project. "
            "Add one: see the [[flow]] example in config.toml."
        )
    if not isinstance(flows, list) or not all(isinstance(f, dict) for f in flows):
        raise ConfigError(f"{path} [flow]: flows must be written as [[flow]] tables.")
    parsed = tuple(_flow(path, index, table) for index, table in enumerate(flows))
    names = [flow.name for flow in parsed]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{path} [[flow]]: the name {dupes[0]!r} is used twice. Give each flow its own name.")
    return parsed


def _flow(path: Path, index: int, table: dict[str, Any]) -> Flow:
    check_keys(path, "flow", table, [key.name for key in FLOW])
    name = read_key(Site(path, f"flow #{index + 1}", FLOW[0], {}), table)  # until it has a name
    values = read_table(path, "flow", f"flow {name!r}", table, FLOW[1:], {})
    project, writeback, notify = values.pop("project"), values.pop("writeback"), values.pop("notify")
    return Flow(name=name, **values, **project, **writeback, **notify)


def _name(name: str, site: Site) -> str:
    if not NAME.fullmatch(name):
        raise site.fail(
            f"{site.key.name} = {name!r}: use {NAME_RULE} (it is part of the marker syncd writes into each project)."
        )
    return name


def _previous_names(names: Any, site: Site) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) and NAME.fullmatch(n) for n in names):
        raise site.fail(
            f'previous_names must be a list of the names this flow had before, e.g. previous_names = ["welcome"] '
            f"({NAME_RULE})."
        )
    return tuple(names)


def _rule(source: str, site: Site) -> rules.Rule:
    try:
        return rules.parse(source)
    except rules.RuleError as exc:
        raise site.fail(f"'when' is not a valid rule: {exc}.") from None


def _template(source: str, site: Site, key: str = "") -> Template:
    try:
        return Template.parse(source)
    except TemplateError as exc:
        raise site.fail(f"{key or site.key.name!r} is not a valid template: {exc}.") from None


def _optional_gid(value: Any, site: Site) -> str:
    if not str(value).isdigit():
        raise site.fail(f"{site.key.name} = {value!r} is not an Asana gid (digits only).")
    return str(value)


def _days(value: Any, site: Site) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise site.fail(f"{site.key.name} = {value!r} must be a whole number of days.")
    return value


def _color(color: Any, site: Site) -> str:
    if color not in ASANA_COLORS:
        raise site.fail(f"color = {color!r} is not an Asana color; use one of {', '.join(ASANA_COLORS)}.")
    return str(color)


def _privacy(privacy: Any, site: Site) -> str:
    if privacy not in ASANA_PRIVACY:
        raise site.fail(f"privacy = {privacy!r}: use one of {', '.join(ASANA_PRIVACY)}.")
    return str(privacy)


def _field_value(value: Any) -> list[str] | None:
    """A custom field's value as template sources: a template, a number, or a list of templates."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _custom_fields(custom: Any, site: Site) -> tuple[tuple[str, FieldValue], ...]:
    sources = {str(k): _field_value(v) for k, v in custom.items()} if isinstance(custom, dict) else {}
    if not isinstance(custom, dict) or not all(k.isdigit() and v is not None for k, v in sources.items()):
        raise site.fail(
            "custom_fields must map custom field gids to templates (an enum option or a multi_enum's options by "
            'name, comma-separated or as a list), e.g. custom_fields = { "1201234567890" = "{tier}", '
            '"1201234567891" = ["Onboarding", "{region}"] }.'
        )
    return tuple(
        (gid, FieldValue(tuple(_template(t, site, gid) for t in texts), isinstance(custom[gid], list)))
        for gid, texts in sources.items()
        if texts is not None
    )


def _template_dates(dates: Any, site: Site) -> tuple[tuple[str, Template], ...]:
    if not isinstance(dates, dict) or not all(isinstance(v, str) for v in dates.values()):
        raise site.fail(
            "template_dates must map the template's date variables (by name, as Asana shows them) to date "
            'templates, e.g. template_dates = { "Start Date" = "{close_date}" }.'
        )
    return tuple((str(name), _template(text, site, str(name))) for name, text in dates.items())


def _template_roles(roles: Any, site: Site) -> tuple[tuple[str, str], ...]:
    if not isinstance(roles, dict) or not all(isinstance(v, str) and v for v in roles.values()):
        raise site.fail(
            'template_roles must map the template\'s roles (by name) to users (a gid, an email or "me"), e.g. '
            'template_roles = { "Account manager" = "1201234567890" }.'
        )
    return tuple((str(name), user) for name, user in roles.items())


def _notify_text(text: Any, site: Site) -> Template | None:
    if not site.values["flow.notify"]["notify_env"]:  # an empty slack_webhook_env turns the message off
        return None
    if not isinstance(text, str):
        raise site.fail(f"'text' must be a str, not {text!r}.")
    return _template(text, site)


def _sub_table(keys: tuple[Key, ...]) -> Callable[[Any, Site], dict[str, Any]]:
    """The check of a key that holds a table: the values of its keys. A table with a required key is off (all None)
    when absent or empty: [flow.writeback] needs its property only once it is written."""

    def check(table: Any, site: Site) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise site.fail(f"'{site.key.name}' must be a table, written {site.key.table}.")
        name = site.key.table.strip("[]")
        check_keys(site.path, name, table, [key.name for key in keys])
        if not table and any(key.default is REQUIRED for key in keys):
            return {key.field: None for key in keys}
        return read_table(site.path, name, f"{site.where} {site.key.name}", table, keys, {})

    return check


def _tasks(tasks: Any, site: Site) -> tuple[TaskSpec, ...]:
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise site.fail("tasks must be written as [[flow.tasks]] tables.")
    specs = []
    for index, table in enumerate(tasks, 1):
        check_keys(site.path, "flow.tasks", table, [key.name for key in TASK])
        specs.append(TaskSpec(**read_table(site.path, "flow.tasks", f"{site.where} task #{index}", table, TASK, {})))
    return tuple(specs)


_REFIRE = one_of(once="one project per deal, ever", per_entry="a new project each time the deal re-enters the rule")
_DAYS = "due date = the deal's close date + this many days"
PROJECT = (
    Key("name", str, "Onboarding: {name}", "a template of `when`'s names", check=_template, attr="project_name"),
    Key("notes", str, "Created by syncd from CRM deal {id}.", "a template", check=_template, attr="project_notes"),
    Key("template", object, None, "an Asana project template gid to instantiate instead", check=_optional_gid),
    Key("owner", object, None, "a user gid", check=_optional_gid),
    Key("due_days_after_close", object, None, _DAYS, check=_days),
    Key("color", object, None, "an Asana project color", check=_color),
    Key("privacy", object, None, " | ".join(ASANA_PRIVACY), check=_privacy),
    Key("custom_fields", object, {}, "custom field gid -> template; options by name", check=_custom_fields),
    Key("template_dates", object, {}, "template date variable -> date template", check=_template_dates),
    Key("template_roles", object, {}, "template role -> user gid or email", check=_template_roles),
)
TASK = (
    Key("name", str, "Task", "a template", check=_template),
    Key("notes", str, "", "a template", check=_template),
    Key("assignee", object, None, "a user gid", check=_optional_gid),
    Key("due_days_after_close", object, None, _DAYS, check=_days),
)
WRITEBACK = (Key("property", str, REQUIRED, "the CRM field that receives the project URL", attr="writeback"),)
NOTIFY = (
    Key("slack_webhook_env", str, REQUIRED, "the variable holding a Slack webhook URL", attr="notify_env"),
    Key("text", object, "New project for {name}: {project_url}", "a template", check=_notify_text, attr="notify_text"),
)
FLOW = (
    Key("name", str, REQUIRED, "letters, digits, . - and _; part of the marker in each project", check=_name),
    Key(
        "previous_names",
        object,
        [],
        "names this flow had before: their projects are its own (rename without duplicates)",
        check=_previous_names,
    ),
    Key("when", str, REQUIRED, "the rule: the flow fires when it becomes true for a deal", check=_rule, attr="rule"),
    Key("project", object, {}, "the project to create", check=_sub_table(PROJECT), table="[flow.project]"),
    Key("enabled", bool, True, "false: record the deals, create nothing until true (see syncd flow pause)"),
    Key("refire", str, "once", "once: one project per deal; per_entry: one per entry into the rule", check=_REFIRE),
    Key("tasks", object, [], "tasks created in the project, each exactly once", check=_tasks, table="[[flow.tasks]]"),
    Key(
        "writeback", object, {}, "the project URL onto the deal", check=_sub_table(WRITEBACK), table="[flow.writeback]"
    ),
    Key("notify", object, {}, "a Slack message per project", check=_sub_table(NOTIFY), table="[flow.notify]"),
)
TABLES = {"flow": FLOW, "flow.project": PROJECT, "flow.tasks": TASK, "flow.writeback": WRITEBACK, "flow.notify": NOTIFY}
