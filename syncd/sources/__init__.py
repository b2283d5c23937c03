"""CRM sources. A source turns "deals changed since the cursor" into `Page`s; see `Source`.

Adding a CRM is one module here, `syncd/sources/<kind>.py`, with a class implementing `Source` and a
`from_config(cfg, client) -> Source` that reads its credentials and asks `client(auth_headers, buckets)` for
its HTTP client; plus its defaults line in `syncd.config.KIND_DEFAULTS`. The engine, store and sink do not
change per CRM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from syncd.http import HttpClient, Profile
from syncd.models import Page
from syncd.ratelimit import TokenBucket

ClientFactory = Callable[[dict[str, str], dict[str, TokenBucket], Profile], HttpClient]


class Source(Protocol):
    kind: str
    http: HttpClient

    def write_back(self, deal_id: str, prop: str, value: str) -> None:
        """Set one property of one deal (the project URL, for [flow.writeback]); idempotent."""
        ...

    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        """Yield pages of deals modified at or after `since_ms` (everything when None) and at or before the
        CRM's own clock minus `delay_ms`. Each page's `cursor_ms` is safe to store once the page is recorded;
        the last page carries the end of the window. Raises `RemoteError` subclasses; never advances past a
        page the caller has not taken."""
        ...
