"""The accounts of `syncd run --accounts DIR` and `syncd status --accounts DIR`: one config file per CRM account
(`DIR/*.toml`, the format `syncd@.service` uses), all with their state on one PostgreSQL database.

Refused with exit 78 and a sentence naming the file and the key: an empty DIR, a config not on PostgreSQL, a
config on another database than the first one's, two files with the same `[crm] account`, and two files whose
`[metrics]` differ (a worker serves one endpoint for all its accounts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd import config as configuration
from syncd.config_values import PostgresState
from syncd.errors import ConfigError
from syncd.models import iso_s
from syncd.store.read import Status


@dataclass(frozen=True)
class Account:
    """One config file of DIR, loaded, with where its state is."""

    path: Path
    cfg: configuration.Config
    state: PostgresState

    @property
    def name(self) -> str:
        return self.cfg.crm.account


def load_accounts(directory: Path) -> list[Account]:
    """Every `*.toml` of `directory`, in name order, or ConfigError (exit 78) with the file and the key."""
    paths = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    if not paths:
        raise ConfigError(
            f"--accounts {directory}: no config file (*.toml) there. Put one config per CRM account in that "
            "folder, each with [state] url or url_env on the same PostgreSQL database."
        )
    accounts: list[Account] = []
    by_name: dict[str, Path] = {}
    for path in paths:
        cfg = configuration.load(path)
        if not cfg.on_postgres:
            raise ConfigError(
                f"{path} [state]: syncd run --accounts shares the accounts among workers by PostgreSQL leases, "
                "so every config needs [state] url or url_env (this one keeps its state in a SQLite file)."
            )
        state = configuration.state(cfg)
        assert isinstance(state, PostgresState)
        if (other := by_name.get(cfg.crm.account)) is not None:
            raise ConfigError(
                f"{path} [crm] account = {cfg.crm.account!r}: {other} has the same account. Each account needs "
                "exactly one config file in the folder; remove or rename one."
            )
        if accounts and state.url != accounts[0].state.url:
            raise ConfigError(
                f"{path} [state] url: the workers share one database, and this file names another one than "
                f"{accounts[0].path} ({accounts[0].state.shown}). Use the same url or url_env in every file."
            )
        by_name[cfg.crm.account] = path
        accounts.append(Account(path, cfg, state))
    metrics_endpoint(accounts)
    return accounts


def metrics_endpoint(accounts: list[Account]) -> tuple[str, str | None] | None:
    """(`[metrics] listen`, `token_env`) of the worker's one endpoint, from the files that set `listen`; None
    when none does. Files that set it must agree, or ConfigError names the two files."""
    named = [(a.path, a.cfg.metrics_listen, a.cfg.metrics_token_env) for a in accounts if a.cfg.metrics_listen]
    if not named:
        return None
    first, listen, token_env = named[0]
    for path, other_listen, other_token in named[1:]:
        if (other_listen, other_token) != (listen, token_env):
            raise ConfigError(
                f"{path} [metrics]: listen = {other_listen!r}, token_env = {other_token!r}, but {first} has listen "
                f"= {listen!r}, token_env = {token_env!r}. A worker serves one metrics endpoint for all its "
                "accounts: set the same [metrics] in every file that has one, or remove it from all but one."
            )
    return listen, token_env


def status_line(account: Account, status: Status | None, problem: str | None = None) -> tuple[str, bool]:
    """One line of `syncd status --accounts DIR`, and whether the account is healthy: it has a live holder and
    its own status (`syncd status --config FILE`) finds no problem."""
    if status is None:
        return f"{account.name}: UNHEALTHY: {problem}", False
    lease = status.lease
    if lease is None:
        held = "holder none (never taken)"
    else:
        left = f"expires in {lease.expires_in:.1f}s" if lease.live else f"expired {-lease.expires_in:.0f}s ago"
        held = f"holder {lease.holder if lease.live else 'none'} fence {lease.fence} lease {left}"
    age = status.cursor_age_seconds
    cursor = "cursor none" if age is None else f"cursor {age:.0f}s old"
    ops = " ".join(f"{state.value}={count}" for state, count in status.ops.items() if count)
    last = status.last_cycle
    outcome = "none" if last is None else f"{'ok' if last.ok else 'FAILED'} {iso_s(last.finished_at)}"
    cycle = f"last cycle {outcome}"
    problems = list(status.problems)
    if lease is None or not lease.live:
        problems.insert(0, "no live holder: start 'syncd run --accounts' on a host (a worker takes it by itself)")
    text = f"{account.name}: {held}; {cursor}; ops {ops or 'none'}; {cycle}"
    if problems:
        text += f"; UNHEALTHY: {'; '.join(dict.fromkeys(problems))}"
    return text, not problems
