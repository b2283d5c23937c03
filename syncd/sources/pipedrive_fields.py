"""Pipedrive's deal fields (`GET /api/v2/dealFields`) as the flows see them.

Flows name a custom field by its friendly name ("Deal Size Band" is `deal_size_band`); Pipedrive names it by a
40-hex field code and sends enum/set values as option ids. This module resolves the one to the other from the
dealFields listing, and turns a field's raw value into what flows see. It is apart from `pipedrive.py`, which
pages the deals, because the resolution is its own pure job with its own setup errors: two custom fields with
one friendly name, or more custom fields than one deals request may ask for (`SourceSetupError`).

A custom field whose friendly name is a standard deal field's is not asked for: the standard field wins.

`DealFields` is one reading of the whole listing, resolved for the flows, and when it was read. Pipedrive
charges API tokens per call against a daily budget ("each request consumes a certain number of tokens from a set
daily allowance", https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting), so the source keeps one
reading for the life of the process and reads again only when it is old or has been proved incomplete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from syncd.errors import SourceSetupError

DEAL_FIELDS = "/api/v2/dealFields"
MAX_CUSTOM_FIELDS = 15  # the deals endpoint's documented limit for `custom_fields`
FIELDS_PAGE_SIZE = 500
MAX_VALUE_CHARS = 100_000
Scalar = str | int | float | bool


class Field:
    """A custom deal field: its friendly `name` for flows, and the labels of its options (enum/set)."""

    def __init__(self, code: str, label: str, kind: str, options: dict[int, str]) -> None:
        self.code, self.label, self.kind, self.options = code, label, kind, options
        self.name = friendly_name(label)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Field:
        options = {
            o["id"]: str(o.get("label"))
            for o in item.get("options") or []
            if isinstance(o, dict) and isinstance(o.get("id"), int) and not isinstance(o.get("id"), bool)
        }
        return cls(item["field_code"], item["field_name"], str(item.get("field_type")), options)

    def values(self, raw: Any) -> dict[str, Any]:
        """This field's raw value -> what flows see: option ids become labels, a {value, currency} object
        becomes `name` and `name_currency`. Raises ValueError for a shape Pipedrive does not send."""
        if isinstance(raw, dict):
            out = {self.name: checked(raw.get("value"), self.label)}
            for key, value in raw.items():
                if key != "value":
                    out[f"{self.name}_{friendly_name(str(key))}"] = checked(value, self.label)
            return out
        if self.kind in ("enum", "set") and raw is not None:
            ids = raw if isinstance(raw, list) else str(raw).split(",") if isinstance(raw, str) else [raw]
            labels = [self._label(i) for i in ids if i != ""]
            return {self.name: labels if self.kind == "set" else (labels[0] if labels else None)}
        return {self.name: checked(raw, self.label)}

    def _label(self, option: Any) -> Any:
        if isinstance(option, str) and option.strip().isdigit():
            option = int(option)
        if isinstance(option, bool) or not isinstance(option, int | str):
            raise ValueError(f"custom field {self.label!r} has option {str(option)[:40]!r}, not an option id")
        return self.options.get(option, option) if isinstance(option, int) else option


@dataclass(frozen=True)
class DealFields:
    """Every item of one dealFields listing, `custom` (the flows' custom fields by code, as `custom_fields`
    resolves them), the `codes` of every field listed, and `read_at` (the source's monotonic timer)."""

    items: tuple[Any, ...]
    custom: dict[str, Field]
    codes: frozenset[str]
    read_at: float

    @classmethod
    def resolve(cls, items: Iterable[Any], names: frozenset[str], read_at: float) -> DealFields:
        """Raises SourceSetupError as `custom_fields` does, so that a setup the flows cannot use is not kept."""
        items = tuple(items)
        codes = frozenset(
            i["field_code"] for i in items if isinstance(i, dict) and isinstance(i.get("field_code"), str)
        )
        return cls(items, custom_fields(items, names), codes, read_at)

    def code(self, prop: str) -> str | None:
        """The custom field code `prop` names (see `field_code`); None for a standard or unknown field."""
        return field_code(self.items, prop)

    def knows(self, prop: str) -> bool:
        """Whether `prop` is a field of this listing, by its code or a custom field's friendly name."""
        return prop in self.codes or self.code(prop) is not None

    def unknown(self, records: Iterable[Any]) -> frozenset[str]:
        """The custom field codes in `records` (deals as listed) that this listing does not have: a field was
        created since it was read."""
        seen = {
            code
            for record in records
            if isinstance(record, dict) and isinstance(record.get("custom_fields"), dict)
            for code in record["custom_fields"]
        }
        return frozenset(seen - self.codes)

    def knowing(self, codes: frozenset[str]) -> DealFields:
        """This reading, with `codes` counted as known: a code that a fresh listing still lacks (a field hidden
        from this user, say) does not make every later poll read the listing again."""
        return replace(self, codes=self.codes | codes)


def custom_fields(items: Iterable[Any], names: frozenset[str]) -> dict[str, Field]:
    """The custom fields among `names` (friendly names, or standard fields' codes), by field code, from every
    item of the dealFields listing. Raises SourceSetupError when a name is ambiguous or there are too many."""
    by_name: dict[str, list[Field]] = {}
    standard: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("field_code"), str):
            continue
        if item.get("is_custom_field") is not True:
            standard.add(item["field_code"])
        elif isinstance(item.get("field_name"), str):
            field = Field.from_item(item)
            by_name.setdefault(field.name, []).append(field)
    wanted = sorted((names - standard) & by_name.keys())
    for name in wanted:
        if len(by_name[name]) > 1:
            labels = ", ".join(repr(f.label) for f in by_name[name])
            raise SourceSetupError(
                f"Pipedrive deal fields {labels} are all called `{name}` in flows; rename all but one of them "
                "in Pipedrive (Settings > Data fields) so the flows know which one they mean."
            )
    if len(wanted) > MAX_CUSTOM_FIELDS:
        raise SourceSetupError(
            f"flows use {len(wanted)} Pipedrive custom fields ({', '.join(wanted)}), but Pipedrive returns at "
            f"most {MAX_CUSTOM_FIELDS} per request. Use at most {MAX_CUSTOM_FIELDS} custom fields in the flows' "
            "`when` and project templates."
        )
    return {by_name[name][0].code: by_name[name][0] for name in wanted}


def field_code(items: Iterable[Any], prop: str) -> str | None:
    """The code of the custom field that `prop` names (by its code or its friendly name), the last one listed
    when several match; None when `prop` is not a custom field."""
    code: str | None = None
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("is_custom_field") is True
            and prop in (item.get("field_code"), friendly_name(str(item.get("field_name", ""))))
        ):
            code = item["field_code"]
    return code


def friendly_name(label: str) -> str:
    """'Deal Size Band' -> 'deal_size_band': lower-case, runs of anything but letters and digits -> '_'."""
    return re.sub(r"[\W_]+", "_", label.lower()).strip("_")


def checked(value: Any, name: str) -> Any:
    """A value flows may see: a scalar, or a list of scalars (set fields, label ids)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is not None and not isinstance(item, Scalar):
            raise ValueError(f"field {name!r} holds a {type(item).__name__}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"field {name!r} holds {item!r}")
        if isinstance(item, str) and len(item) > MAX_VALUE_CHARS:
            raise ValueError(f"field {name!r} is {len(item)} characters long")
    return value
