"""config.toml + environment/.env -> a frozen `Config`, with errors that name the key and the fix.

Where the config comes from: `--config PATH`, else `$SYNCD_CONFIG`, else `./config.toml`. A `.env` beside the
config file is loaded first; real environment variables win over it. Tokens are never in the file: the file
names the variable (`token_env`), and `read_secret` finds its value in the environment, or in a systemd
credential of that name (`$CREDENTIALS_DIRECTORY/<name>`). The config is loaded without tokens, so
`syncd status` works without them.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv

from syncd import rules
from syncd.errors import ConfigError
from syncd.flows import Flow, TaskSpec, Template, TemplateError
from syncd.redact import register_secret

KINDS = ("hubspot", "salesforce", "pipedrive")
# Per CRM: default base URL (None: required), default token variable, default/maximum page size, burst limit.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "hubspot": {"base_url": "https://api.hubapi.com", "token_env": "HUBSPOT_TOKEN", "page": (200, 200), "burst": 100},
    "salesforce": {"base_url": "https://login.salesforce.com", "token_env": "", "page": (2000, 2000), "burst": 100},
    "pipedrive": {"base_url": None, "token_env": "PIPEDRIVE_TOKEN", "page": (500, 500), "burst": 100},
}
ALLOWED: dict[str, set[str]] = {
    "": {"state", "crm", "asana", "http", "schedule", "flow", "alerts", "metrics"},
    "alerts": {"slack_webhook_env", "webhook_url_env", "stale_after_minutes", "quota_warn_percent"},
    "metrics": {"listen"},
    "state": {"path"},
    "crm": {
        "kind",
        "base_url",
        "token_env",
        "overlap_seconds",
        "delay_seconds",
        "account",
        "page_size",
        "search_per_second",
        "requests_per_10_seconds",
        "client_id_env",
        "client_secret_env",
        "refresh_token_env",
        "api_version",
        "fields",
        "api_usage_stop_percent",
    },
    "asana": {"base_url", "token_env", "workspace", "team", "requests_per_minute", "settle_seconds", "max_attempts"},
    "http": {"connect_timeout", "read_timeout", "max_tries", "max_time_seconds", "retry_base_seconds"},
    "schedule": {"interval_seconds"},
    "flow": {"name", "when", "project", "refire", "tasks", "writeback", "notify"},
    "flow.project": {"name", "notes", "template", "owner", "due_days_after_close", "color", "privacy", "custom_fields"},
    "flow.tasks": {"name", "notes", "assignee", "due_days_after_close"},
    "flow.writeback": {"property"},
    "flow.notify": {"slack_webhook_env", "text"},
}


ASANA_COLORS = (
    "dark-pink",
    "dark-green",
    "dark-blue",
    "dark-red",
    "dark-teal",
    "dark-brown",
    "dark-orange",
    "dark-purple",
    "dark-warm-gray",
    "light-pink",
    "light-green",
    "light-blue",
    "light-red",
    "light-teal",
    "light-brown",
    "light-orange",
    "light-purple",
    "light-warm-gray",
    "none",
)
ASANA_PRIVACY = ("public_to_workspace", "private_to_team", "private")


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
    requests_per_minute: int
    settle_seconds: float
    max_attempts: int


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float
    read_timeout: float
    max_tries: int
    max_time_seconds: float
    retry_base_seconds: float


@dataclass(frozen=True)
class AlertsConfig:
    slack_webhook_env: str | None = None  # variable names; the URLs are secrets
    webhook_url_env: str | None = None
    stale_after_seconds: float = 900.0
    quota_warn_fraction: float = 0.8


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

    @property
    def crm_properties(self) -> frozenset[str]:
        return frozenset().union(*(flow.names for flow in self.flows))


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    return Path(explicit or os.environ.get("SYNCD_CONFIG") or "config.toml")


def load(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Pass --config PATH or set SYNCD_CONFIG; config.toml in the source tree "
            "is a commented example."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the line it names.") from None
    load_dotenv(path.parent / ".env", override=False)
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Config:
    t = _Tables(raw, path)
    t.check_keys("", raw)
    state, crm, asana, http, schedule = (t.table(name) for name in ("state", "crm", "asana", "http", "schedule"))

    kind = t.get(crm, "crm", "kind", str, "hubspot")
    if kind not in KINDS:
        raise ConfigError(f"{path} [crm]: kind = {kind!r} is not supported. Use one of: {', '.join(KINDS)}.")
    defaults = KIND_DEFAULTS[kind]
    if defaults["base_url"] is None and "base_url" not in crm:
        raise ConfigError(
            f"{path} [crm]: 'base_url' is missing. For Pipedrive it is your company domain, "
            'e.g. base_url = "https://yourcompany.pipedrive.com".'
        )
    api_version = t.get(crm, "crm", "api_version", str, "v60.0")
    if not re.fullmatch(r"v\d+\.\d", api_version):
        raise ConfigError(f'{path} [crm]: api_version = {api_version!r} should look like "v60.0".')
    fields = crm.get("fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) and re.fullmatch(r"\w+(\.\w+)?", f) for f in fields):
        raise ConfigError(
            f'{path} [crm]: \'fields\' must be a list of field names such as ["Tier__c", "Account.Name"].'
        )
    http_cfg = HttpConfig(
        connect_timeout=t.number(http, "http", "connect_timeout", 5, minimum=0.1),
        read_timeout=t.number(http, "http", "read_timeout", 30, minimum=0.1),
        max_tries=int(t.number(http, "http", "max_tries", 5, minimum=1)),
        max_time_seconds=t.number(http, "http", "max_time_seconds", 120, minimum=0),
        retry_base_seconds=t.number(http, "http", "retry_base_seconds", 0.5, minimum=0),
    )
    settle = t.number(asana, "asana", "settle_seconds", http_cfg.read_timeout + 15, minimum=0)
    if settle <= http_cfg.read_timeout:
        raise ConfigError(
            f"{path} [asana]: settle_seconds = {settle:g} must be longer than [http] read_timeout = "
            f"{http_cfg.read_timeout:g}, or a project created by a slow request could be missed by reconcile "
            "and created twice. Raise settle_seconds or lower read_timeout."
        )
    alerts_t, metrics_t = t.table("alerts"), t.table("metrics")
    interval = t.number(schedule, "schedule", "interval_seconds", 60, minimum=1)
    stale = 60 * t.number(alerts_t, "alerts", "stale_after_minutes", max(15.0, 3 * interval / 60), minimum=1)
    if stale <= interval:
        raise ConfigError(
            f"{path} [alerts]: stale_after_minutes = {stale / 60:g} must be longer than [schedule] "
            f"interval_seconds = {interval:g}, or every wait between cycles would alert."
        )
    alerts_cfg = AlertsConfig(
        slack_webhook_env=t.get(alerts_t, "alerts", "slack_webhook_env", str)
        if "slack_webhook_env" in alerts_t
        else None,
        webhook_url_env=t.get(alerts_t, "alerts", "webhook_url_env", str) if "webhook_url_env" in alerts_t else None,
        stale_after_seconds=stale,
        quota_warn_fraction=t.number(alerts_t, "alerts", "quota_warn_percent", 80, minimum=1, maximum=100) / 100,
    )
    listen = None
    if "listen" in metrics_t:
        from syncd.metrics import parse_listen  # cheap: prometheus_client is imported only when serving

        listen = t.get(metrics_t, "metrics", "listen", str)
        parse_listen(listen, f"{path} [metrics] listen")
    flows = tuple(t.flow(i, f) for i, f in enumerate(t.flows()))
    names = [f.name for f in flows]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{path} [[flow]]: the name {dupes[0]!r} is used twice. Give each flow its own name.")
    return Config(
        path=path,
        state_path=(path.parent / t.get(state, "state", "path", str, "syncd.db")).resolve(),
        crm=CrmConfig(
            kind=kind,
            base_url=t.url(crm, "crm", defaults["base_url"]),
            token_env=t.get(crm, "crm", "token_env", str, defaults["token_env"] or "unused"),
            overlap_seconds=t.number(crm, "crm", "overlap_seconds", 300, minimum=0),
            delay_seconds=t.number(crm, "crm", "delay_seconds", 30, minimum=0),
            account=t.get(crm, "crm", "account", str, "default"),
            page_size=int(
                t.number(crm, "crm", "page_size", defaults["page"][0], minimum=1, maximum=defaults["page"][1])
            ),
            search_per_second=t.number(crm, "crm", "search_per_second", 4, minimum=0.01),
            requests_per_10_seconds=int(t.number(crm, "crm", "requests_per_10_seconds", defaults["burst"], minimum=1)),
            client_id_env=t.get(crm, "crm", "client_id_env", str, "SALESFORCE_CLIENT_ID"),
            client_secret_env=t.get(crm, "crm", "client_secret_env", str, "SALESFORCE_CLIENT_SECRET"),
            refresh_token_env=t.get(crm, "crm", "refresh_token_env", str, "SALESFORCE_REFRESH_TOKEN"),
            api_version=api_version,
            fields=tuple(fields),
            api_usage_stop_percent=t.number(crm, "crm", "api_usage_stop_percent", 90, minimum=1, maximum=100),
        ),
        asana=AsanaConfig(
            base_url=t.url(asana, "asana", "https://app.asana.com/api/1.0"),
            token_env=t.get(asana, "asana", "token_env", str, "ASANA_TOKEN"),
            workspace=t.gid(asana, "workspace", "Copy it from the workspace's URL in Asana"),
            team=t.gid(asana, "team", "Copy it from the team's URL in Asana (app.asana.com/0/<team gid>/...)"),
            requests_per_minute=int(t.number(asana, "asana", "requests_per_minute", 150, minimum=1)),
            settle_seconds=settle,
            max_attempts=int(t.number(asana, "asana", "max_attempts", 10, minimum=1)),
        ),
        http=http_cfg,
        interval_seconds=interval,
        flows=flows,
        alerts=alerts_cfg,
        metrics_listen=listen,
    )


def read_secret(name: str) -> str:
    """The value of the token called `name`: environment (and .env), else a systemd credential."""
    value = os.environ.get(name, "").strip()
    if not value and (creds := os.environ.get("CREDENTIALS_DIRECTORY")):
        file = Path(creds) / name
        if file.is_file():
            value = file.read_text(encoding="utf-8").strip()
    if value:
        register_secret(value)
    else:
        raise ConfigError(
            f"The token variable {name} is not set. Put {name}=... in the environment, in the .env file "
            "beside the config file, or in a systemd credential of that name."
        )
    return value


class _Tables:
    """Typed access to the parsed TOML that turns every mistake into a sentence naming the key."""

    def __init__(self, raw: dict[str, Any], path: Path) -> None:
        self.raw, self.path = raw, path

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path} [{where}]: {message}")

    def check_keys(self, where: str, table: dict[str, Any]) -> None:
        for key in table:
            if key not in ALLOWED[where]:
                close = difflib.get_close_matches(key, ALLOWED[where], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(sorted(ALLOWED[where]))}."
                raise self.fail(where or "top level", f"unknown key {key!r}.{hint}")

    def table(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"'{name}' must be a table, written [{name}].")
        self.check_keys(name, value)
        return value

    def get(self, table: dict[str, Any], where: str, key: str, kind: type, default: Any = None) -> Any:
        value = table.get(key, default)
        if value is None:
            raise self.fail(where, f"{key!r} is missing.")
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.fail(where, f"{key!r} must be a {kind.__name__}, not {value!r}.")
        return value

    def number(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        default: float,
        *,
        minimum: float,
        maximum: float | None = None,
    ) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{key!r} must be a number, not {value!r}.")
        if value < minimum or (maximum is not None and value > maximum):
            limits = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            raise self.fail(where, f"{key!r} = {value!r} is out of range; use a value {limits}.")
        return float(value)

    def url(self, table: dict[str, Any], where: str, default: str) -> str:
        url = self.get(table, where, "base_url", str, default).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return url
        if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
            return url
        raise self.fail(
            where,
            f"base_url = {url!r} must be an https:// URL (http:// is allowed only for "
            "127.0.0.1/localhost, e.g. the sandbox).",
        )

    def gid(self, table: dict[str, Any], key: str, fix: str) -> str:
        value = table.get(key)
        if value is None:
            raise self.fail("asana", f"{key!r} is missing. {fix}.")
        value = str(value).strip()
        if not value.isdigit():
            raise self.fail("asana", f"{key} = {value!r} is not an Asana gid (digits only). {fix}.")
        return value

    def flows(self) -> list[dict[str, Any]]:
        flows = self.raw.get("flow")
        if not flows:
            raise self.fail(
                "flow",
                "no [[flow]] is configured, so syncd would never create a project. "
                "Add one: see the [[flow]] example in config.toml.",
            )
        if not isinstance(flows, list) or not all(isinstance(f, dict) for f in flows):
            raise self.fail("flow", "flows must be written as [[flow]] tables.")
        return flows

    def flow(self, index: int, table: dict[str, Any]) -> Flow:
        self.check_keys("flow", table)
        where = f"flow #{index + 1}"
        name = self.get(table, where, "name", str)
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise self.fail(
                where,
                f"name = {name!r}: use letters, digits, '-' and '_' only (it is part of the "
                "marker syncd writes into each project).",
            )
        where = f"flow {name!r}"
        try:
            rule = rules.parse(self.get(table, where, "when", str))
        except rules.RuleError as exc:
            raise self.fail(where, f"'when' is not a valid rule: {exc}.") from None
        project = table.get("project", {})
        if not isinstance(project, dict):
            raise self.fail(where, "'project' must be a table, written [flow.project].")
        self.check_keys("flow.project", project)
        at = f"{where} project"
        refire = self.get(table, where, "refire", str, "once")
        if refire not in ("once", "per_entry"):
            raise self.fail(
                where,
                f'refire = {refire!r}: use "once" (one project per deal, ever) or '
                '"per_entry" (a new project each time the deal re-enters the rule).',
            )
        color, privacy = project.get("color"), project.get("privacy")
        if color is not None and color not in ASANA_COLORS:
            raise self.fail(at, f"color = {color!r} is not an Asana color; use one of {', '.join(ASANA_COLORS)}.")
        if privacy is not None and privacy not in ASANA_PRIVACY:
            raise self.fail(at, f"privacy = {privacy!r}: use one of {', '.join(ASANA_PRIVACY)}.")
        custom = project.get("custom_fields", {})
        if not isinstance(custom, dict) or not all(str(k).isdigit() and isinstance(v, str) for k, v in custom.items()):
            raise self.fail(
                at,
                "custom_fields must map custom field gids to templates, e.g. "
                'custom_fields = { "1201234567890" = "{tier}" }.',
            )
        tasks = table.get("tasks", [])
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise self.fail(where, "tasks must be written as [[flow.tasks]] tables.")
        writeback = table.get("writeback", {})
        notify = table.get("notify", {})
        for key, value in (("writeback", writeback), ("notify", notify)):
            if not isinstance(value, dict):
                raise self.fail(where, f"'{key}' must be a table, written [flow.{key}].")
            self.check_keys(f"flow.{key}", value)
        notify_env = notify.get("slack_webhook_env")
        return Flow(
            name=name,
            rule=rule,
            project_name=self.template(project, at, "name", "Onboarding: {name}"),
            project_notes=self.template(project, at, "notes", "Created by syncd from CRM deal {id}."),
            refire=refire,
            template=self.optional_gid(project, at, "template"),
            owner=self.optional_gid(project, at, "owner"),
            due_days_after_close=self.optional_int(project, at, "due_days_after_close"),
            color=color,
            privacy=privacy,
            custom_fields=tuple((str(gid), self.template(custom, at, gid, "")) for gid in custom),
            tasks=tuple(self.task(t, f"{where} task #{i + 1}") for i, t in enumerate(tasks)),
            writeback=self.get(writeback, f"{where} writeback", "property", str) if writeback else None,
            notify_env=self.get(notify, f"{where} notify", "slack_webhook_env", str) if notify else None,
            notify_text=self.template(notify, f"{where} notify", "text", "New project for {name}: {project_url}")
            if notify_env
            else None,
        )

    def template(self, table: dict[str, Any], where: str, key: str, default: str) -> Template:
        try:
            return Template.parse(self.get(table, where, key, str, default))
        except TemplateError as exc:
            raise self.fail(where, f"{key!r} is not a valid template: {exc}.") from None

    def optional_gid(self, table: dict[str, Any], where: str, key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not str(value).isdigit():
            raise self.fail(where, f"{key} = {value!r} is not an Asana gid (digits only).")
        return str(value)

    def optional_int(self, table: dict[str, Any], where: str, key: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{key} = {value!r} must be a whole number of days.")
        return value

    def task(self, table: dict[str, Any], where: str) -> TaskSpec:
        self.check_keys("flow.tasks", table)
        return TaskSpec(
            name=self.template(table, where, "name", "Task"),
            notes=self.template(table, where, "notes", ""),
            assignee=self.optional_gid(table, where, "assignee"),
            due_days_after_close=self.optional_int(table, where, "due_days_after_close"),
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
