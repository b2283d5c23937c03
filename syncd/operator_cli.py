"""The operator's commands: `retry`, `backfill`, `flow pause|resume`, `history` and `quarantine` (registered on
the `syncd` group by `syncd.cli`, which they share the conventions and exit codes of).

Those that change the ledger work beside a running syncd: when another process holds the lock they leave a
request in the database in one short transaction (`syncd.store.inbox`), and say when its next cycle applies it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import click

from syncd import config as configuration
from syncd import lock
from syncd.errors import LockHeld

if TYPE_CHECKING:
    from syncd.cli import App
    from syncd.operator import Backfill
    from syncd.runtime import Runtime


@contextmanager
def runtime_unless_busy(app: App, cfg: configuration.Config) -> Iterator[Runtime | None]:
    """The runtime under the lock (PostgreSQL: the lease), or None while another syncd holds it: the command
    then leaves a request."""
    from syncd import compose

    with ExitStack() as held:
        try:
            fd = None if cfg.on_postgres else lock.acquire(cfg.state_path)
            if fd is not None:
                held.callback(lock.release, fd)
            rt = held.enter_context(compose.runtime(cfg, fd, app.hooks))
        except LockHeld:
            rt = None
        yield rt


def leave_request(app: App, cfg: configuration.Config, kind: str, args: dict[str, object]) -> None:
    """Another syncd holds the lock: record the request for it, in one short transaction, and say when it acts."""
    from syncd import operator

    with operator.inbox_store(configuration.state(cfg)) as (store, _):
        number = store.inbox.ask(kind, args, app.hooks.clock())
        when = operator.when_applied(store, app.hooks.clock())
    held = f"the lease of account {cfg.crm.account}" if cfg.on_postgres else f"{cfg.state_path}.lock"
    click.echo(f"Another syncd holds {held}, so this is request #{number}. {when}")


@click.command()
@click.argument("deal_id", required=False)
@click.option("--all", "every", is_flag=True, help="Every dead op, of every deal.")
@click.pass_obj
def retry(app: App, deal_id: str | None, every: bool) -> None:
    """Send a deal's dead ops (or --all) back through reconcile, then create what is missing (never a blind
    re-create). While another syncd runs, its next cycle does it."""
    if bool(deal_id) == every:
        raise click.UsageError("Name one deal (syncd retry DEAL_ID) or pass --all, not both.")
    cfg = app.config()
    which = f"deal {deal_id}" if deal_id else "every deal"
    nothing = f"Deal {deal_id} has no dead op" if deal_id else "There is no dead op"
    with runtime_unless_busy(app, cfg) as rt:
        if rt is None:
            from syncd.store import view

            with view(configuration.state(cfg)) as store:
                dead = store.dead_ops(deal_id)
            if not dead:
                click.echo(f"{nothing}. 'syncd status' lists the dead ones.")
                sys.exit(1)
            leave_request(app, cfg, "retry", {"deal": deal_id})
            return
        from syncd import operator
        from syncd.engine import Cycle

        keys = operator.retry(rt.store, deal_id, rt.clock(), rt.settings, rt.flows, rt.source.kind)
        if not keys:
            click.echo(f"{nothing}. 'syncd status' lists the dead ones.")
            sys.exit(1)
        click.echo(f"Reconciling {len(keys)} op(s) of {which}: {', '.join(keys)}")
        report = Cycle(rt, poll=False).run()
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@click.command()
@click.option(
    "--since",
    "since",
    required=True,
    metavar="DATE",
    help="Only deals modified at or after this date (YYYY-MM-DD or ISO 8601, UTC).",
)
@click.option("--flow", "flow_name", metavar="NAME", help="Only this flow (default: every flow).")
@click.option("--dry-run", is_flag=True, help="List the projects it would create; change nothing.")
@click.pass_obj
def backfill(app: App, since: str, flow_name: str | None, dry_run: bool) -> None:
    """Create projects for deals that qualify by the current rules but have none, e.g. won before syncd
    watched (never a duplicate: every create is checked against Asana first). While another syncd runs, its
    next cycle queues them."""
    since_ms = parse_date_ms(since)
    cfg = app.config()
    flows = tuple(f for f in cfg.flows if flow_name in (None, f.name))
    if not flows:
        raise click.BadParameter(f"no flow is named {flow_name!r} in {cfg.path}", param_hint="--flow")
    if dry_run:
        from syncd import compose, operator
        from syncd.store import view

        with view(configuration.state(cfg)) as store:
            done = operator.backfill(
                store, flows, compose.settings(cfg), crm=cfg.crm.kind, since_ms=since_ms, now=0.0, dry_run=True
            )
        show_backfill(done, "Would queue")
        return
    with runtime_unless_busy(app, cfg) as rt:
        if rt is None:
            leave_request(app, cfg, "backfill", {"since_ms": since_ms, "flow": flow_name})
            return
        from syncd import operator
        from syncd.engine import Cycle

        done = operator.backfill(
            rt.store, flows, rt.settings, crm=rt.source.kind, since_ms=since_ms, now=rt.clock(), dry_run=False
        )
        show_backfill(done, "Queued")
        if not done.queued:
            return
        report = Cycle(rt, poll=False).run()
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


def show_backfill(done: Backfill, verb: str) -> None:
    click.echo(f"{verb} {len(done.queued)} project(s) for deals that qualify by the current rules:")
    for name in done.queued:
        click.echo(f"  {name}")
    if done.unjudged:
        click.echo(f"Cannot judge {len(done.unjudged)} deal(s): a rule names a property syncd never fetched.")
        click.echo("  The next change to such a deal is judged with it; or re-add the flow to re-read all deals.")
        for line in done.unjudged[:20]:
            click.echo(f"  {line}")


@click.group()
def flow() -> None:
    """Pause or resume a flow: its deals are still recorded, its projects wait (also while syncd runs)."""


@flow.command()
@click.argument("name")
@click.pass_obj
def pause(app: App, name: str) -> None:
    """Create no project for flow NAME until 'syncd flow resume NAME'."""
    set_paused(app, name, True)


@flow.command()
@click.argument("name")
@click.pass_obj
def resume(app: App, name: str) -> None:
    """Create the projects flow NAME held back while paused, and new ones again."""
    set_paused(app, name, False)


def set_paused(app: App, name: str, paused: bool) -> None:
    from syncd import operator

    cfg = app.config()
    if name not in {f.name for f in cfg.flows}:
        names = ", ".join(f.name for f in cfg.flows)
        raise click.BadParameter(f"no flow is named {name!r} in {cfg.path} (its flows: {names})", param_hint="NAME")
    with operator.inbox_store(configuration.state(cfg)) as (store, busy):
        changed = store.inbox.set_paused(name, paused, app.hooks.clock())
        when = operator.when_applied(store, app.hooks.clock()) if busy else "The next cycle acts on it."
    state = "paused" if paused else "resumed"
    click.echo(f"Flow {name} {state}." if changed else f"Flow {name} was already {state}.")
    if changed:
        click.echo(when.replace("applies it", "sees it"))


@click.command()
@click.option("-n", "count", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many cycles.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def history(app: App, count: int, as_json: bool) -> None:
    """The recent cycles, newest first: outcome (ok, failed, interrupted, running, died), counts and duration."""
    from syncd.status_text import cycles_json, format_history
    from syncd.store.read import read_cycles

    rows = read_cycles(configuration.state(app.config()), count)
    click.echo(json.dumps(cycles_json(rows), indent=2) if as_json else format_history(rows))


@click.command()
@click.option("--clear", "record_id", metavar="ID", help="Forget why this record (a deal id) was quarantined.")
@click.pass_obj
def quarantine(app: App, record_id: str | None) -> None:
    """The CRM records syncd could not read, and why; --clear ID forgets one (also while syncd runs)."""
    from syncd import operator
    from syncd.status_text import format_quarantine
    from syncd.store import read_status

    cfg = app.config()
    if record_id is None:
        click.echo(format_quarantine(read_status(configuration.state(cfg), app.hooks.clock())))
        return
    with operator.inbox_store(configuration.state(cfg)) as (store, _):
        cleared = store.inbox.clear_quarantine(record_id)
    if not cleared:
        click.echo(f"Record {record_id} is not quarantined. 'syncd quarantine' lists those that are.")
        sys.exit(1)
    click.echo(f"Cleared {cleared} quarantine entr{'y' if cleared == 1 else 'ies'} of record {record_id}.")


def parse_date_ms(text: str) -> int:
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD or ISO 8601", param_hint="--since") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
