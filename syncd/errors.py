"""syncd's errors, sorted by what the caller should do about them.

```
SyncdError                 base; the CLI prints "Error: <message>" and exits with .exit_code
├── ConfigError            exit 78: names the file, the key and the fix
├── SourceSetupError       exit 78: the CRM's own setup does not fit the flows; says what to change where
├── StoreError             exit 74: the state database (or its folder) is unusable; says why and what to do
│   ├── NoStateYet         nothing has been recorded there yet (the first run creates it)
│   ├── LockHeld           exit 75: another syncd holds the lock (or the lease); try again later
│   └── LeaseLost          exit 75: another syncd took this one's lease over; it stopped writing and sending
└── RemoteError            a call to a CRM or to Asana failed; .service, .status
    ├── TransientError     timeouts, connection errors, 5xx, unparsable answers: try again later
    │   └── RateLimited    429 (or Salesforce's 403 REQUEST_LIMIT_EXCEEDED, Pipedrive's edge HTML 403); .retry_after
    │       └── QuotaExhausted  a daily (or other long) quota is spent: never retried within a call
    ├── AuthError          401/403: the credential named in the message must be fixed
    └── RejectedError      any other 4xx: the request itself is wrong; retrying will not help
```

`TransientError.sent` says whether the request may have reached the server. It matters only for
non-idempotent calls: a POST that failed before it was sent did not happen; one that failed after may have.
`TransientError.doubt` says how much is unknown about a sent one (see `DOUBTS`): how long reconcile waits.
Programming errors are not `SyncdError`: they crash loudly with a traceback, which the journal keeps.
"""

from __future__ import annotations

EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


class SyncdError(Exception):
    exit_code = 1


class ConfigError(SyncdError):
    exit_code = EX_CONFIG


class SourceSetupError(SyncdError):
    """The CRM's setup, found at poll time, does not fit the flows (e.g. Pipedrive custom fields)."""

    exit_code = EX_CONFIG


class StoreError(SyncdError):
    exit_code = EX_IOERR


class LockHeld(StoreError):
    exit_code = EX_TEMPFAIL


class NoStateYet(StoreError):
    """No syncd has written this state yet (no file; on PostgreSQL, no tables): `syncd once` creates it."""


class LeaseLost(StoreError):
    """The lease expired or another syncd took it over: this process may no longer write or send."""

    exit_code = EX_TEMPFAIL


class RemoteError(SyncdError):
    def __init__(self, message: str, *, service: str, status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status


# How a sent request failed, from what the client saw. The first two mean the server is done with it (it
# answered, or it closed the connection after taking the whole request): what it did is in a listing once the
# listing's consistency delay has passed. The others mean it may still be working on it.
DOUBTS = ("answered", "reset", "timeout", "lost")
SERVER_DONE = ("answered", "reset")


class TransientError(RemoteError):
    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        sent: bool = True,
        doubt: str | None = None,
    ) -> None:
        super().__init__(message, service=service, status=status)
        self.sent = sent
        self.doubt = doubt if doubt is not None else "answered" if status is not None else "lost"


class RateLimited(TransientError):
    def __init__(self, message: str, *, service: str, status: int | None = 429, retry_after: float | None) -> None:
        super().__init__(message, service=service, status=status, sent=False)
        self.retry_after = retry_after


class AuthError(RemoteError):
    pass


class RejectedError(RemoteError):
    pass


class QuotaExhausted(RateLimited):
    """A daily or other long quota is spent (`.retry_after`: the pause, seconds); never retried within a call."""
