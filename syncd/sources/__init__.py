"""CRM sources. A source turns "deals changed since the cursor" into `Page`s; see `Source`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from syncd.http import HttpClient
from syncd.models import Page


class Source(Protocol):
    kind: str
    http: HttpClient

    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        """Yield pages of deals modified at or after `since_ms` (everything when None) and at or before the
        CRM's own clock minus `delay_ms`. Each page's `cursor_ms` is safe to store once the page is recorded;
        the last page carries the end of the window. Raises `RemoteError` subclasses; never advances past a
        page the caller has not taken."""
        ...
