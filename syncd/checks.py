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
from syncd.store import read_status


def run_checks(wiring: Wiring, cfg: Config, say: Callable[[str], None]) -> int:
    """Say one line per check; return how many problems were found."""
    source, problems = wiring.source, 0
    try:
        page = next(iter(source.pages(int(time.time() * 1000) - 60_000, 0)))
        say(f"{source.kind}: ok, the credentials can read deals ({len(page.deals)} changed in the last minute)")
    except AuthError as exc:
        problems += 1
        say(
            f"{source.kind}: the credentials were rejected ({exc.status}). Check {source.credential_hint} "
            f"and the app's read access to deals. {exc}"
        )
    except RemoteError as exc:
        problems += 1
        say(f"{source.kind}: could not read deals: {exc}")
    try:
        for line in wiring.sink.check():
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
