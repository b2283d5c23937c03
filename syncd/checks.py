"""`syncd check`: reach the CRM and Asana with the configured credentials and say in plain words what is
wrong. Reads one window of deals; never writes."""

from __future__ import annotations

import time
from collections.abc import Callable

from syncd import config as configuration
from syncd.compose import Wiring
from syncd.config import Config
from syncd.errors import AuthError, NoStateYet, RemoteError, StoreError
from syncd.flows import unconfigured
from syncd.sources import Source
from syncd.sources.schema import findings
from syncd.store import read_status


def run_checks(wiring: Wiring, cfg: Config, say: Callable[[str], None]) -> int:
    """Say one line per check; return how many problems were found."""
    source, problems, rejected = wiring.source, 0, False
    try:
        page = next(iter(source.pages(int(time.time() * 1000) - 60_000, 0)))
        say(f"{source.kind}: ok, the credentials can read deals ({len(page.deals)} changed in the last minute)")
        if source.credential_origin:
            say(f"{source.kind}: using {source.credential_origin}")
    except AuthError as exc:
        problems, rejected = problems + 1, True
        say(
            f"{source.kind}: the credentials were rejected ({exc.status}). Check {source.credential_hint} "
            f"and the app's read access to deals. {exc}"
        )
    except RemoteError as exc:
        problems += 1
        say(f"{source.kind}: could not read deals: {exc}")  # a bad field name is a common cause: read on
    found, choices = (0, {}) if rejected else check_schema(source, cfg, say)
    problems += found
    try:
        for line in wiring.sink.check():
            say(f"asana: {line}")
        for line in wiring.sink.check_flows(cfg.flows, choices):  # custom field options, template date variables, roles
            problems += 1
            say(f"asana: {line}")
    except AuthError as exc:
        problems += 1
        say(
            f"asana: the token in {cfg.asana.token_env} was rejected ({exc.status}); create a new personal "
            f"access token or check its access to the workspace. {exc}"
        )
    except RemoteError as exc:
        problems += 1
        hint = " Check [asana] workspace and team." if exc.status == 404 else ""
        say(f"asana: {exc}.{hint}")
    return problems + check_offline(cfg, say, rules=False)


def check_offline(cfg: Config, say: Callable[[str], None], *, rules: bool = True) -> int:
    """`syncd check --offline`: no token, no network. The config has loaded (so every rule parsed); say what
    each flow's rule reads, and whether the state database is readable and matches the flows."""
    problems = 0
    for flow in cfg.flows if rules else ():
        state = "" if flow.enabled else " (enabled = false)"
        say(f"flow {flow.name}{state}: when {flow.rule.source}  (reads: {', '.join(sorted(flow.rule.names))})")
    if cfg.on_postgres or cfg.state_path.exists():
        try:
            ledger = read_status(configuration.state(cfg), time.time()).ledger_flows
        except NoStateYet:
            say("state: reachable; nothing recorded yet (the first 'syncd once' or 'syncd run' creates it)")
        except StoreError as exc:
            problems += 1
            say(f"state: {exc}")
        else:
            for line in unconfigured(ledger, cfg.flows):
                problems += 1
                say(f"state: {line}")
    return problems


def check_schema(source: Source, cfg: Config, say: Callable[[str], None]) -> tuple[int, dict[str, tuple[str, ...]]]:
    """The flows' names against the CRM's declared deal fields: how many problems were found, and each
    enumeration's options (to judge a `"{tier}"` custom field value against Asana's options)."""
    try:
        schema = source.schema()
    except RemoteError as exc:
        say(f"{source.kind}: could not read the deal fields: {exc}")
        return 1, {}
    lines = findings(schema, cfg.flows, cfg.crm.fields)
    for line in lines:
        say(f"{source.kind}: {line}")
    return len(lines), {name: field.options for name, field in schema.fields.items() if field.options}
