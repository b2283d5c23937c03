"""`Key`: how every table of config.toml declares its keys, and how a table is read from those declarations.

Each key is declared once, as a `Key`: its type, default, range and a line of help. Reading a table, the
unknown-key check and `syncd.config.documented_defaults` all come from the declarations; what a type and a range
cannot say is a `check` function attached to the key, called with the `Site` the key is read at, so that its
message names the file and the table. `syncd.config` declares [state], [crm], ... and `syncd.flow_config` the
[[flow]] tables; both import this module, which imports neither.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.errors import ConfigError


class _Required(enum.Enum):
    REQUIRED = "required"


REQUIRED = _Required.REQUIRED  # the default of a key that must be written
Values = Mapping[str, Mapping[str, Any]]  # what has been read so far: table -> attribute -> value


@dataclass(frozen=True)
class Derived:
    """A default (or maximum) computed from keys read before it, such as the CRM's kind: none to document."""

    compute: Callable[[Values], Any]


@dataclass(frozen=True)
class Key:
    """One key of a table. `type`: str, float (a number), int (a number, truncated) or object (`check` decides).
    `default`: a value, None (optional), REQUIRED or Derived. `check(value, site)` returns the value to keep;
    `fix` ends the "is missing" message; `attr` is the attribute when it is not `name`; `table` says how a key
    that holds a table is written ("[flow.project]")."""

    name: str
    type: type
    default: object
    help: str
    minimum: float | None = None
    maximum: float | Derived | None = None
    check: Callable[[Any, Site], Any] | None = None
    fix: str = ""
    attr: str = ""
    table: str = ""

    @property
    def field(self) -> str:
        return self.attr or self.name

    @property
    def plain_default(self) -> bool:
        return not self.table and self.default is not None and not isinstance(self.default, Derived | _Required)


@dataclass(frozen=True)
class Site:
    """Where a key is read: the file and the table as the message names it, and the values read so far."""

    path: Path
    where: str
    key: Key
    values: Values

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path} [{self.where}]: {message}")


def one_of(**meanings: str) -> Callable[[Any, Site], Any]:
    """A check that the value is one of `meanings`' names; the error says what each one means."""

    def check(value: Any, site: Site) -> Any:
        if value not in meanings:
            choices = " or ".join(f'"{name}" ({meaning})' for name, meaning in meanings.items())
            raise site.fail(f"{site.key.name} = {value!r}: use {choices}.")
        return value

    return check


def check_keys(path: Path, name: str, table: Mapping[str, Any], known: Collection[str]) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(sorted(known))}."
            raise ConfigError(f"{path} [{name or 'top level'}]: unknown key {key!r}.{hint}")


def read_tables(
    path: Path, raw: Mapping[str, Any], tables: Mapping[str, tuple[Key, ...]], elsewhere: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The file's top-level `tables` (absent ones read as empty), each table -> attribute -> value; the names in
    `elsewhere` are top-level keys read by the caller. Every key is checked before any is read, and the tables
    are read in the order of `tables`, so that derived defaults find their sources."""
    check_keys(path, "", raw, [*tables, *elsewhere])
    found = {name: raw.get(name, {}) for name in tables}
    for name, table in found.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path} [{name}]: '{name}' must be a table, written [{name}].")
        check_keys(path, name, table, [key.name for key in tables[name]])
    values: dict[str, dict[str, Any]] = {}
    for name, table in found.items():
        read_table(path, name, name, table, tables[name], values)
    return values


def read_table(
    path: Path, name: str, where: str, table: Mapping[str, Any], keys: tuple[Key, ...], values: dict[str, Any]
) -> dict[str, Any]:
    """The table's values by attribute, read in declaration order; also kept as `values[name]` for later keys."""
    got: dict[str, Any] = {}
    values[name] = got
    for key in keys:
        got[key.field] = read_key(Site(path, where, key, values), table)
    return got


def read_key(site: Site, table: Mapping[str, Any]) -> Any:
    """One key's value: the default when absent, then its type, range and check."""
    key = site.key
    value = table.get(key.name, key.default)
    if isinstance(value, Derived):
        value = value.compute(site.values)
    if value is REQUIRED:
        raise site.fail(f"{key.name!r} is missing." + (f" {key.fix}." if key.fix else ""))
    if value is None:
        return None
    if key.type in (float, int):
        value = _number(value, site)
    elif not isinstance(value, key.type):
        raise site.fail(f"{key.name!r} must be a {key.type.__name__}, not {value!r}.")
    if key.check:
        value = key.check(value, site)
    return int(value) if key.type is int else value


def _number(value: Any, site: Site) -> float:
    key = site.key
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise site.fail(f"{key.name!r} must be a number, not {value!r}.")
    maximum = key.maximum.compute(site.values) if isinstance(key.maximum, Derived) else key.maximum
    if (key.minimum is not None and value < key.minimum) or (maximum is not None and value > maximum):
        limits = f"between {key.minimum:g} and {maximum:g}" if maximum is not None else f"at least {key.minimum:g}"
        raise site.fail(f"{key.name!r} = {value!r} is out of range; use a value {limits}.")
    return float(value)


def plain_defaults(tables: Mapping[str, tuple[Key, ...]]) -> dict[str, dict[str, object]]:
    """Table -> key -> default, for every key whose default is a value of its own (not required, optional,
    derived from another key, or a table)."""
    return {name: {key.name: key.default for key in keys if key.plain_default} for name, keys in tables.items()}
