"""CRM sources. A source turns "deals changed since the cursor" into `Page`s; see `Source`.

A source takes plain arguments: a ready `HttpClient` (built with the vendor's `Profile`) and plain values
(properties, page size, secrets as strings...). It never reads config, env or secrets itself.

Adding a CRM:
1. its source module, `syncd/sources/<kind>.py`: a class implementing `Source`, its pure parsers, and its
   `PROFILE` (what its limit headers and error bodies mean to `syncd.http`);
2. its fake, `syncd/sandbox/<kind>.py`, written from the vendor's documentation (it shares no code with 1.);
3. one builder in `syncd.compose` (and its line in `SOURCES`) that reads the CRM's secrets and settings from the
   config and builds the client and the source; plus its defaults line in `KIND_DEFAULTS` (config.py).
The engine, store and sink do not change per CRM.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from syncd.http import HttpClient
from syncd.models import Page
from syncd.sources.schema import Schema


class Source(Protocol):
    kind: str
    http: HttpClient
    credential_hint: str  # what to check when the CRM rejects the credentials ("the variable named by ...")

    @property
    def credential_origin(self) -> str | None:
        """Which of several possible credentials is in use, when there is a choice (never the credential)."""
        ...

    def schema(self) -> Schema:
        """The deal fields the CRM declares, for `syncd check` (`syncd.sources.schema`)."""
        ...

    def write_back(self, deal_id: str, prop: str, value: str) -> None:
        """Set one property of one deal (the project URL, for [flow.writeback]); idempotent."""
        ...

    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        """Yield pages of deals modified at or after `since_ms` (everything when None) and at or before the
        CRM's own clock minus `delay_ms`. Each page's `cursor_ms` is safe to store once the page is recorded;
        the last page carries the end of the window. Raises `RemoteError` subclasses; never advances past a
        page the caller has not taken."""
        ...
