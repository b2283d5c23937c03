"""What a loaded config is: frozen values, one dataclass per table, built by `syncd.config.parse` from the
declarations there. Other modules read these and never the TOML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from syncd.flows import Flow

LEASE_MARGIN_SECONDS = 1.0  # PostgreSQL: lease left beyond connect + read timeout before a request is sent


@dataclass(frozen=True)
class CrmConfig:
    kind: str
    base_url: str
    token_env: str
    overlap_seconds: float
    delay_seconds: float
    account: str
    page_size: int
    search_per_second: float
    requests_per_10_seconds: int
    # Salesforce only
    client_id_env: str = "SALESFORCE_CLIENT_ID"
    client_secret_env: str = "SALESFORCE_CLIENT_SECRET"
    refresh_token_env: str = "SALESFORCE_REFRESH_TOKEN"
    api_version: str = "v60.0"
    fields: tuple[str, ...] = ()
    api_usage_stop_percent: float = 90.0


@dataclass(frozen=True)
class AsanaConfig:
    base_url: str
    token_env: str
    workspace: str
    team: str
    requests_per_minute: int | None  # an explicit cap; None: learned (syncd.asana_rate)
    settle_seconds: float
    listing_lag_seconds: float
    max_attempts: int
    auth: str = "token"
    enable_changes: tuple[str, ...] = ()
    disable_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float
    read_timeout: float
    max_tries: int
    max_time_seconds: float
    retry_base_seconds: float

    @property
    def lease_needed(self) -> float:
        """PostgreSQL: how much of its lease a holder must have left to send a request (connect + read timeout
        + a margin), so that the request ends before anyone else may send."""
        return self.connect_timeout + self.read_timeout + LEASE_MARGIN_SECONDS


@dataclass(frozen=True)
class AlertsConfig:
    slack_webhook_env: str | None = None  # variable names; the URLs are secrets
    webhook_url_env: str | None = None
    stale_after_seconds: float = 900.0
    quota_warn_fraction: float = 0.8


@dataclass(frozen=True)
class PostgresState:
    """Where a PostgreSQL store is: the libpq URL (a secret when it came from `url_env`), the account whose
    rows it holds, and how long its lease lasts without renewal."""

    url: str
    account: str
    lease_seconds: float = 60.0

    @property
    def shown(self) -> str:
        """The URL without user info or query, for messages and `syncd status`."""
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"postgresql://{host}{f':{parts.port}' if parts.port else ''}{parts.path} (account {self.account})"

    def __repr__(self) -> str:
        return f"PostgresState({self.shown!r})"


@dataclass(frozen=True)
class Config:
    path: Path
    state_path: Path
    crm: CrmConfig
    asana: AsanaConfig
    http: HttpConfig
    interval_seconds: float
    flows: tuple[Flow, ...]
    alerts: AlertsConfig = AlertsConfig()
    metrics_listen: str | None = None
    metrics_token_env: str | None = None  # the variable holding the status page's bearer token
    log_format: str = "text"  # [log] format: text | json
    state_url: str | None = None  # [state] url: PostgreSQL, without a password
    state_url_env: str | None = None  # [state] url_env: the variable (or credential) holding the URL
    lease_seconds: float = 60.0

    @property
    def on_postgres(self) -> bool:
        return bool(self.state_url or self.state_url_env)

    @property
    def crm_properties(self) -> frozenset[str]:
        return frozenset().union(*(flow.names for flow in self.flows))
