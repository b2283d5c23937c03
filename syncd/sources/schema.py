"""The CRM's declared deal fields, and what `syncd check` finds wrong with the flows against them.

Each source reads its CRM's own declaration (HubSpot's properties API, Salesforce's describe, Pipedrive's
dealFields) into a `Schema`: the names flows may use, each with its type and whether an API user may write it.
`findings` then says, per flow key, every name a rule or template uses that the CRM does not have (with the
nearest it does have), and a write-back property that is missing or read-only. HubSpot ignores an unknown
property in a search and rejects it in a PATCH, so without this a misspelled name is a rule that never matches,
a template that renders empty, or a write-back that fails on every deal.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncd.errors import RemoteError, SourceSetupError
from syncd.flows import Flow

if TYPE_CHECKING:
    from syncd.sources import Source

log = logging.getLogger("syncd")

NORMALISED = frozenset({"id", "name", "stage", "amount", "close_date", "pipeline", "owner", "updated_at"})


@dataclass(frozen=True)
class Declared:
    name: str  # as the CRM spells it
    kind: str  # the CRM's type: "bool", "number", "datetime", "enumeration", "string"...
    writable: bool
    options: tuple[str, ...] = ()  # the values an enumeration can take, as deals carry them


@dataclass(frozen=True)
class Schema:
    """`fields` by the name flows use. `case_insensitive`: the CRM matches names in any case (Salesforce).
    `derived`: names the source makes itself and that are not the CRM's to judge (`Account_Name`)."""

    vendor: str
    fields: dict[str, Declared]
    case_insensitive: bool = False
    derived: frozenset[str] = frozenset()

    def lookup(self, name: str) -> Declared | None:
        if name in self.derived:
            return Declared(name, "string", False)
        if name in self.fields:
            return self.fields[name]
        if self.case_insensitive:
            folded = {key.casefold(): value for key, value in self.fields.items()}
            return folded.get(name.casefold())
        return None

    def nearest(self, name: str) -> str:
        close = difflib.get_close_matches(name, [*NORMALISED, *self.fields], n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""


def findings(schema: Schema, flows: Iterable[Flow], extra: Iterable[str] = ()) -> list[str]:
    """One sentence per problem, naming the flow key and the fix. `extra` are names outside the flows that the
    config asks for (`[crm] fields`)."""
    out: list[str] = []
    for flow in flows:
        for name in sorted(flow.names - NORMALISED):
            if schema.lookup(name) is None:
                out.append(
                    f"[[flow]] {flow.name!r}: {name!r} is not a {schema.vendor} deal field{schema.nearest(name)}; "
                    "fix the name in the flow's `when` or templates"
                )
        if flow.writeback:
            declared = schema.lookup(flow.writeback)
            if declared is None:
                out.append(
                    f"[[flow]] {flow.name!r} [flow.writeback] property: {flow.writeback!r} is not a {schema.vendor} "
                    f"deal field{schema.nearest(flow.writeback)}; create it in {schema.vendor} or fix the name"
                )
            elif not declared.writable:
                out.append(
                    f"[[flow]] {flow.name!r} [flow.writeback] property: {flow.writeback!r} is read-only in "
                    f"{schema.vendor}; choose a field the API may write"
                )
    for name in extra:
        if "." not in name and (declared := schema.lookup(name)) is not None and declared.name != name:
            out.append(f"[crm] fields: {name!r} is {declared.name!r} in {schema.vendor}; use that spelling")
        elif "." not in name and schema.lookup(name) is None:
            out.append(f"[crm] fields: {name!r} is not a {schema.vendor} deal field{schema.nearest(name)}")
    return out


def verify(source: Source, flows: Iterable[Flow], extra: Iterable[str] = ()) -> None:
    """At start and on SIGHUP: raise SourceSetupError (exit 78) with every finding. The CRM not answering is not
    a finding: the cycles will report it, and a daemon must not refuse to start because its CRM is down."""
    try:
        schema = source.schema()
    except RemoteError as exc:
        log.warning("%s: the deal fields could not be read to check the flows (%s); checking again at SIGHUP",
                    source.kind, exc)  # fmt: skip
        return
    if lines := findings(schema, flows, extra):
        raise SourceSetupError(
            f"the flows name {schema.vendor} deal fields that do not fit: " + "; ".join(lines) + ". `syncd check` "
            "shows the same list."
        )
