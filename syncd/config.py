"""config.toml + environment/.env -> a frozen `Config`, with errors that name the key and the fix.

Where the config comes from: `--config PATH`, else `$SYNCD_CONFIG`, else `./config.toml`. A `.env` beside the
config file is loaded first; real environment variables win over it. Tokens are never in the file: the file
names the variable (`token_env`), and `read_secret` finds its value in the environment, or in a systemd
credential of that name (`$CREDENTIALS_DIRECTORY/<name>`). The config is loaded without tokens, so
`syncd status` works without them.

Each key is declared once, as a `syncd.config_keys.Key`, in `TABLES` below (the [[flow]] tables are in
`syncd.flow_config`): parsing, the unknown-key check and `documented_defaults` all come from those declarations.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncd import tokens
from syncd.config_keys import REQUIRED, Derived, Key, Site, one_of, plain_defaults, read_tables
from syncd.config_values import LEASE_MARGIN_SECONDS as MARGIN_SECONDS
from syncd.config_values import AlertsConfig as AlertsConfig
from syncd.config_values import AsanaConfig as AsanaConfig
from syncd.config_values import Config as Config
from syncd.config_values import CrmConfig as CrmConfig
from syncd.config_values import HttpConfig as HttpConfig
from syncd.config_values import PostgresState as PostgresState
from syncd.errors import ConfigError
from syncd.flow_config import ASANA_COLORS as ASANA_COLORS
from syncd.flow_config import ASANA_PRIVACY as ASANA_PRIVACY
from syncd.flow_config import TABLES as FLOW_TABLES
from syncd.flow_config import parse_flows
from syncd.marker import NAME, NAME_RULE
from syncd.redact import register_secret

KINDS = ("hubspot", "salesforce", "pipedrive")
# Per CRM: default base URL (None: required), default token variable, default/maximum page size, burst limit.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "hubspot": {"base_url": "https://api.hubapi.com", "token_env": "HUBSPOT_TOKEN", "page": (200, 200), "burst": 100},
    "salesforce": {"base_url": "https://login.salesforce.com", "token_env": "", "page": (2000, 2000), "burst": 100},
    "pipedrive": {"base_url": None, "token_env": "PIPEDRIVE_TOKEN", "page": (500, 500), "burst": 100},
}


def _kind(kind: str, site: Site) -> str:
    if kind not in KINDS:
        raise site.fail(f"kind = {kind!r} is not supported. Use one of: {', '.join(KINDS)}.")
    return kind


def _url(value: str, site: Site) -> str:
    url = value.rstrip("/")
    parts = urlsplit(url)
    if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))):
        return url
    raise site.fail(
        f"base_url = {url!r} must be an https:// URL (http:// is allowed only for "
        "127.0.0.1/localhost, e.g. the sandbox)."
    )


def _account(account: str, site: Site) -> str:
    if not NAME.fullmatch(account):
        raise site.fail(
            f"account = {account!r}: use {NAME_RULE} (it is part of the marker syncd writes into each "
            'project), e.g. account = "acme-eu".'
        )
    return account


def _api_version(version: str, site: Site) -> str:
    if not re.fullmatch(r"v\d+\.\d", version):
        raise site.fail(f'api_version = {version!r} should look like "v60.0".')
    return version


def _fields(fields: Any, site: Site) -> tuple[str, ...]:
    if not isinstance(fields, list) or not all(isinstance(f, str) and re.fullmatch(r"\w+(\.\w+)?", f) for f in fields):
        raise site.fail('\'fields\' must be a list of field names such as ["Tier__c", "Account.Name"].')
    return tuple(fields)


def _change_names(names: Any, site: Site) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) and re.fullmatch(r"[\w.-]+", n) for n in names):
        raise site.fail(
            f"{site.key.name} must be a list of Asana change names, as the Asana-Change header names them, e.g. "
            f'{site.key.name} = ["new_user_task_lists"].'
        )
    return tuple(names)


def _gid(value: Any, site: Site) -> str:
    gid = str(value).strip()
    if not gid.isdigit():
        raise site.fail(f"{site.key.name} = {gid!r} is not an Asana gid (digits only). {site.key.fix}.")
    return gid


def _settle(settle: float, site: Site) -> float:
    read_timeout = site.values["http"]["read_timeout"]
    if settle <= read_timeout:
        raise site.fail(
            f"settle_seconds = {settle:g} must be longer than [http] read_timeout = {read_timeout:g}, or a project "
            "created by a slow request could be missed by reconcile and created twice. Raise settle_seconds or "
            "lower read_timeout."
        )
    return settle


def _lag(lag: float, site: Site) -> float:
    settle = site.values["asana"]["settle_seconds"]
    if lag > settle:
        raise site.fail(
            f"listing_lag_seconds = {lag:g} must not exceed settle_seconds = {settle:g}: a create that Asana "
            "answered never waits longer than one whose answer never came. Lower listing_lag_seconds."
        )
    return lag


def _stale(minutes: float, site: Site) -> float:
    stale, interval = 60 * minutes, site.values["schedule"]["interval_seconds"]  # kept in seconds
    if stale <= interval:
        raise site.fail(
            f"stale_after_minutes = {stale / 60:g} must be longer than [schedule] interval_seconds = "
            f"{interval:g}, or every wait between cycles would alert."
        )
    return stale


def _listen(listen: str, site: Site) -> str:
    from syncd.metrics import parse_listen  # cheap: prometheus_client is imported only when serving

    host, _ = parse_listen(listen, f"{site.path} [metrics] listen")
    if not is_loopback(host) and not site.values["metrics"].get("metrics_token_env"):
        raise site.fail(
            f"listen = {listen!r} is reachable from other machines, so the status page needs a token: set "
            'token_env = "SYNCD_STATUS_TOKEN" and put a long random value in that variable, or listen on '
            "127.0.0.1."
        )
    return listen


def _log_format(value: str, site: Site) -> str:
    if value not in ("text", "json"):
        raise site.fail(f'format = {value!r} is not a log format. Use "text" or "json".')
    return value


def _state_path(path: str, site: Site) -> Path:
    return (site.path.parent / path).resolve()


def _state_url(url: str, site: Site) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise site.fail(
            f'url must be a PostgreSQL URL such as "postgresql://syncd@db.internal:5432/syncd", not {url!r}.'
        )
    if parts.password is not None or "password=" in parts.query:
        raise site.fail(
            "url holds a password, and config files are read by more people and tools than secrets should be. "
            "Remove it from the URL and give it to libpq through PGPASSWORD or a PGPASSFILE, or put the whole "
            "URL in a variable or systemd credential named by url_env instead."
        )
    return url


def _url_env(name: str, site: Site) -> str:
    if site.values["state"].get("state_url"):
        raise site.fail("set url or url_env, not both: url_env names a variable holding the whole URL.")
    return name


def _lease(seconds: float, site: Site) -> float:
    http = site.values["http"]
    needed = http["connect_timeout"] + http["read_timeout"] + MARGIN_SECONDS
    if seconds <= needed:
        raise site.fail(
            f"lease_seconds = {seconds:g} must be longer than [http] connect_timeout + read_timeout + "
            f"{MARGIN_SECONDS:g}s = {needed:g}s: a request is only sent while that much of the lease is left."
        )
    return seconds


def _fraction(percent: float, site: Site) -> float:
    return percent / 100


def _per_kind(pick: Callable[[dict[str, Any]], Any]) -> Derived:
    return Derived(lambda values: pick(KIND_DEFAULTS[values["crm"]["kind"]]))


# Defaults that are not values of their own: per CRM (once [crm] kind is read), or from another table's key.
_BASE_URL, _TOKEN_ENV = _per_kind(lambda d: d["base_url"] or REQUIRED), _per_kind(lambda d: d["token_env"] or "unused")
_PAGE, _MAX_PAGE = _per_kind(lambda d: d["page"][0]), _per_kind(lambda d: d["page"][1])
_BURST = _per_kind(lambda d: d["burst"])
_AUTH = one_of(
    token="a personal access token or service account", oauth="an OAuth app's token, which may set tasks' external ids"
)
_SETTLE = Derived(lambda values: values["http"]["read_timeout"] + 15)
_LAG = Derived(lambda values: min(5.0, values["asana"]["settle_seconds"]))  # 5 s, or all the settle if shorter
_STALE = Derived(lambda values: max(15.0, 3 * values["schedule"]["interval_seconds"] / 60))
_PIPEDRIVE_URL = 'For Pipedrive it is your company domain, e.g. base_url = "https://yourcompany.pipedrive.com"'
_WORKSPACE_FIX = "Copy it from the workspace's URL in Asana"
_TEAM_FIX = "Copy it from the team's URL in Asana (app.asana.com/0/<team gid>/...)"

# Read in this order: [http] before [asana], [state] and [alerts], whose defaults and checks derive from it.
TABLES: dict[str, tuple[Key, ...]] = {
    "crm": (
        Key("kind", str, "hubspot", " | ".join(KINDS), check=_kind),
        Key("base_url", str, _BASE_URL, "the CRM's API", check=_url, fix=_PIPEDRIVE_URL),
        Key("token_env", str, _TOKEN_ENV, "the token's variable (or credential)"),
        Key("overlap_seconds", float, 300, "re-read window below the cursor", minimum=0),
        Key("delay_seconds", float, 0, "never read closer to the CRM's now than this", minimum=0),
        Key("account", str, "default", "goes into each project's marker", check=_account),
        Key("page_size", int, _PAGE, "deals per request", minimum=1, maximum=_MAX_PAGE),
        Key("search_per_second", float, 4, "HubSpot search requests per second", minimum=0.01),
        Key("requests_per_10_seconds", int, _BURST, "burst limit for other calls", minimum=1),
        Key("client_id_env", str, "SALESFORCE_CLIENT_ID", "Salesforce: the connected app's consumer key"),
        Key("client_secret_env", str, "SALESFORCE_CLIENT_SECRET", "Salesforce: the connected app's secret"),
        Key("refresh_token_env", str, "SALESFORCE_REFRESH_TOKEN", "Salesforce: from the refresh-token flow"),
        Key("api_version", str, "v60.0", "Salesforce REST API version", check=_api_version),
        Key("fields", object, [], "Salesforce: extra fields to read", check=_fields),
        Key("api_usage_stop_percent", float, 90, "Salesforce: share of the daily limit", minimum=1, maximum=100),
    ),
    "http": (
        Key("connect_timeout", float, 5, "seconds to connect", minimum=0.1),
        Key("read_timeout", float, 30, "seconds to wait for a response", minimum=0.1),
        Key("max_tries", int, 5, "attempts for idempotent reads; POSTs are never retried here", minimum=1),
        Key("max_time_seconds", float, 120, "time budget for the retries of one read", minimum=0),
        Key("retry_base_seconds", float, 0.5, "first backoff step (full jitter; Retry-After wins)", minimum=0),
    ),
    "state": (
        Key("path", str, "syncd.db", "SQLite state, beside the config file", check=_state_path, attr="state_path"),
        Key("url", str, None, "PostgreSQL instead: a libpq URL without a password", check=_state_url, attr="state_url"),
        Key(
            "url_env",
            str,
            None,
            "PostgreSQL: the variable (or credential) holding the URL",
            check=_url_env,
            attr="state_url_env",
        ),
        Key("lease_seconds", float, 60, "PostgreSQL: one active syncd per account, by lease", minimum=1, check=_lease),
    ),
    "asana": (
        Key("base_url", str, "https://app.asana.com/api/1.0", "Asana's API", check=_url),
        Key("token_env", str, "ASANA_TOKEN", "the token's variable (or credential)"),
        Key("workspace", object, REQUIRED, "the workspace gid", check=_gid, fix=_WORKSPACE_FIX),
        Key("team", object, REQUIRED, "the gid of the team that holds the projects", check=_gid, fix=_TEAM_FIX),
        Key("requests_per_minute", int, None, "a cap; unset: learned from Asana's 429s", minimum=1),
        Key("settle_seconds", float, _SETTLE, "before trusting a listing", minimum=0, check=_settle),
        Key("listing_lag_seconds", float, _LAG, "settle after an answered or hung-up create", minimum=0, check=_lag),
        Key("max_attempts", int, 10, "POSTs per project before the op goes dead", minimum=1),
        Key("auth", str, "token", 'what the token is: "token" (personal or service account) or "oauth"', check=_AUTH),
        Key("enable_changes", object, [], "Asana-Enable: API changes to opt into early", check=_change_names),
        Key("disable_changes", object, [], "Asana-Disable: API changes to opt out of for now", check=_change_names),
    ),
    "schedule": (Key("interval_seconds", float, 15, "`syncd run`: one cycle per interval", minimum=1),),
    "alerts": (
        Key("slack_webhook_env", str, None, "the variable holding a Slack webhook URL"),
        Key("webhook_url_env", str, None, "the variable holding a generic JSON webhook URL"),
        Key(
            "stale_after_minutes",
            float,
            _STALE,
            "alert after this long without a good cycle",
            minimum=1,
            check=_stale,
            attr="stale_after_seconds",
        ),
        Key(
            "quota_warn_percent",
            float,
            80,
            "alert past this share of a daily API quota",
            minimum=1,
            maximum=100,
            check=_fraction,
            attr="quota_warn_fraction",
        ),
    ),
    "metrics": (
        Key("token_env", str, None, "the variable holding the bearer token", attr="metrics_token_env"),
        Key(
            "listen",
            str,
            None,
            "host:port for the status page, /metrics and /healthz",
            check=_listen,
            attr="metrics_listen",
        ),
    ),
    "log": (Key("format", str, "text", "text | json: how log lines look", check=_log_format, attr="log_format"),),
}


def state(cfg: Config) -> Path | PostgresState:
    """Where the state is: the SQLite file, or PostgreSQL when [state] url or url_env is set (the URL read
    from its variable or credential is a secret: it never reaches a log, an error or `syncd status`)."""
    if cfg.state_url_env:
        url = read_secret(cfg.state_url_env, "state URL")
        if password := urlsplit(url).password:
            register_secret(password)
        return PostgresState(url, cfg.crm.account, cfg.lease_seconds)
    if cfg.state_url:
        return PostgresState(cfg.state_url, cfg.crm.account, cfg.lease_seconds)
    return cfg.state_path


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    return Path(explicit or os.environ.get("SYNCD_CONFIG") or "config.toml")


def load(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8-sig"))  # a BOM (Windows editors) is not content
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Pass --config PATH or set SYNCD_CONFIG; config.toml in the source tree "
            "is a commented example."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a config file. Pass --config {path / 'config.toml'}.") from None
    except PermissionError:
        raise ConfigError(f"{path}: this user may not read it. Fix its permissions (chmod 0640).") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}). Save it as UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the line it names.") from None
    tokens.load_env_file(path.parent / ".env")
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Config:
    values = read_tables(path, raw, TABLES, elsewhere=["flow"])  # the [[flow]] tables: parse_flows
    return Config(
        path=path,
        crm=CrmConfig(**values["crm"]),
        asana=AsanaConfig(**values["asana"]),
        http=HttpConfig(**values["http"]),
        alerts=AlertsConfig(**values["alerts"]),
        flows=parse_flows(raw.get("flow"), path),
        **values["state"],
        **values["schedule"],
        **values["metrics"],
        **values["log"],
    )


def documented_defaults() -> dict[str, dict[str, object]]:
    """Table -> key -> default, for every key whose default is a value of its own, in config.toml's tables."""
    return plain_defaults({**TABLES, **FLOW_TABLES})


def read_secret(name: str, what: str = "token") -> str:
    """The value of the token called `name`: environment (and .env), else a systemd credential."""
    value = tokens.find(name)
    if value:
        register_secret(value)
    else:
        raise ConfigError(
            f"The {what} variable {name} is not set. Put {name}=... in the environment, in the .env file "
            "beside the config file, or in a systemd credential of that name."
        )
    return value


def token_names(cfg: Config) -> list[str]:
    """Every token variable the config needs: the CRM's, Asana's and the flows' Slack webhooks."""
    crm = cfg.crm
    names = [crm.client_id_env, crm.client_secret_env, crm.refresh_token_env] if crm.kind == "salesforce" else []
    names += [crm.token_env] if crm.kind != "salesforce" else []
    return [*names, cfg.asana.token_env, *(f.notify_env for f in cfg.flows if f.notify_env)]


def require_tokens(cfg: Config) -> None:
    """Every missing token named at once (ConfigError), before any is used."""
    tokens.require(token_names(cfg), cfg.path.parent / ".env")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
