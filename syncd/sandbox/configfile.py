"""The one writer of syncd config files for the sandbox: the demo's, the tests' and the benchmarks'.

`config_toml({"state": {...}, "crm": {...}}, [{"name": "onboarding", "when": ..., "project": {...}}])` renders
the tables in order, then each flow as a `[[flow]]`. Within a table, a dict value becomes a sub-table
(`[flow.project]`) and a non-empty list of dicts an array of tables (`[[flow.tasks]]`); inside a list they are
written inline. A value TOML cannot hold (None, say) is a TypeError, not a quietly wrong file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def config_toml(
    tables: Mapping[str, Mapping[str, Any]],
    flows: Sequence[Mapping[str, Any]] = (),
    *,
    header: str = "",
    comments: Mapping[str, str] | None = None,
) -> str:
    """The config file's text. `header` becomes comment lines on top; `comments` puts a comment after a key,
    named by its dotted path (`"asana.token_env"`, `"flow.project.template"`: every flow's)."""
    notes = comments or {}
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    blocks = [(f"[{toml_key(name)}]", toml_key(name), table) for name, table in tables.items()]
    blocks += [("[[flow]]", "flow", flow) for flow in flows]
    for head, path, table in blocks:
        if lines:
            lines.append("")
        lines += _table(head, path, table, notes)
    return "\n".join(lines) + "\n"


def _table(head: str, path: str, table: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
    lines, nested = [head], []
    for key, value in table.items():
        where = f"{path}.{toml_key(key)}"
        if isinstance(value, Mapping):
            nested.append((f"[{where}]", where, value))
        elif _is_array_of_tables(value):
            nested += [(f"[[{where}]]", where, item) for item in value]
        else:
            note = f"  # {notes[where]}" if where in notes else ""
            lines.append(f"{toml_key(key)} = {toml_value(value)}{note}")
    for sub_head, sub_path, sub_table in nested:
        lines += _table(sub_head, sub_path, sub_table, notes)
    return lines


def _is_array_of_tables(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(item, Mapping) for item in value)


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    """`value` as TOML: a string, number or boolean, or a list or dict of them (written inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):  # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"config_toml: {value!r} ({type(value).__name__}) has no TOML form")
