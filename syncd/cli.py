"""The `syncd` command: parse, call, print. The only module that prints. Exit codes: 0 ok, 1 a cycle failed
or dead ops remain (status: unhealthy), 2 usage, 75 another syncd holds the lock, 78 the config is wrong.

Commands that write take the single-instance lock first and import the rest of syncd (`syncd.compose`) only
then, so a second syncd exits 75 in a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncd import config as configuration
from syncd import lock
from syncd.errors import SyncdError
from syncd.hooks import Hooks
from syncd.models import State
from syncd.redact import RedactingFilter, redact

if TYPE_CHECKING:
    from syncd.models import CycleReport
    from syncd.runtime import Runtime


@dataclass
class App:
    config_option: str | None
    hooks: Hooks

    def config(self) -> configuration.Config:
        return configuration.load(configuration.config_path(self.config_option))

    @contextmanager
    def runtime(self, cfg: configuration.Config) -> Iterator[Runtime]:
        """The runtime under the single-instance lock, taken before the heavy imports: a second syncd exits
        75 at once. A missing token fails before the database is touched."""
        with holding_lock(cfg) as fd:
            from syncd import compose

            with compose.runtime(cfg, fd, self.hooks) as rt:
                yield rt


@contextmanager
def holding_lock(cfg: configuration.Config) -> Iterator[int | None]:
    """The `flock` beside the SQLite file; on PostgreSQL the store takes the account's lease instead."""
    if cfg.on_postgres:
        yield None
        return
    fd = lock.acquire(cfg.state_path)
    try:
        yield fd
    finally:
        lock.release(fd)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_option", metavar="PATH", help="Config file (default: $SYNCD_CONFIG or ./config.toml)."
)
@click.option("-v", "--verbose", count=True, help="Log more: -v for each API call, -vv for debug.")
@click.version_option(package_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None, verbose: int) -> None:
    """Create one Asana project per CRM deal that newly matches a rule, exactly once, by polling."""
    setup_logging(verbose if ctx.invoked_subcommand != "run" else max(verbose, 1))
    ctx.obj = App(config_option, ctx.obj if isinstance(ctx.obj, Hooks) else Hooks())


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be created; change nothing (no cursor move, no ops).")
@click.pass_obj
def once(app: App, dry_run: bool) -> None:
    """Poll the CRM once and create any missing Asana projects (for cron)."""
    with app.runtime(app.config()) as rt:
        from syncd.engine import Cycle

        report = Cycle(rt, dry_run=dry_run).run()
        dead = rt.store.op_count(State.DEAD)
    click.echo(report.summary())
    if dry_run:
        click.echo("Dry run: nothing was recorded or created.")
    if dead:
        click.echo(f"{dead} dead op(s) need a human: see 'syncd status'.")
    sys.exit(0 if not report.errors and not dead else 1)


@cli.command()
@click.pass_obj
def run(app: App) -> None:
    """Run cycles every [schedule] interval_seconds until SIGTERM; SIGHUP re-reads the config (for systemd)."""
    cfg = app.config()
    with holding_lock(cfg) as fd:
        from syncd.service import serve

        serve(cfg, app.config, fd, app.hooks)


@cli.command()
@click.argument("deal_id")
@click.pass_obj
def retry(app: App, deal_id: str) -> None:
    """Send a deal's dead ops back through reconcile, then run a cycle (never a blind re-create)."""
    with app.runtime(app.config()) as rt:
        from syncd import operator
        from syncd.engine import Cycle

        keys = operator.retry(rt.store, deal_id, rt.clock(), rt.settings, rt.flows, rt.source.kind)
        if not keys:
            click.echo(f"Deal {deal_id} has no dead op. 'syncd status' lists the dead ones.")
            sys.exit(1)
        click.echo(f"Reconciling {len(keys)} op(s) of deal {deal_id}: {', '.join(keys)}")
        report = Cycle(rt).run()
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.argument("deal_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def explain(app: App, deal_id: str, as_json: bool) -> None:
    """Why did (or didn't) this deal get a project? Versions, rule evaluations, op history."""
    from syncd.status_text import format_explain, history_json
    from syncd.store import read_history

    cfg = app.config()
    history = read_history(configuration.state(cfg), deal_id)
    if not history.versions and not history.ops:
        click.echo(
            f"syncd has recorded nothing for deal {deal_id}: it was never polled (check the id, and that "
            "it changed after syncd started watching).",
            err=True,
        )
        sys.exit(1)
    click.echo(json.dumps(history_json(history), indent=2) if as_json else format_explain(history, cfg.flows))


@cli.command()
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
    watched (never a duplicate: every create is checked against Asana first)."""
    since_ms = parse_date_ms(since)
    cfg = app.config()
    flows = tuple(f for f in cfg.flows if flow_name in (None, f.name))
    if not flows:
        raise click.BadParameter(f"no flow is named {flow_name!r} in {cfg.path}", param_hint="--flow")
    with app.runtime(cfg) as rt:
        from syncd import operator
        from syncd.engine import Cycle

        done = operator.backfill(
            rt.store, flows, rt.settings, crm=rt.source.kind, since_ms=since_ms, now=rt.clock(), dry_run=dry_run
        )
        verb = "Would queue" if dry_run else "Queued"
        click.echo(f"{verb} {len(done.queued)} project(s) for deals that qualify by the current rules:")
        for name in done.queued:
            click.echo(f"  {name}")
        if done.unjudged:
            click.echo(f"Cannot judge {len(done.unjudged)} deal(s): a rule names a property syncd never fetched.")
            click.echo("  The next change to such a deal is judged with it; or re-add the flow to re-read all deals.")
            for line in done.unjudged[:20]:
                click.echo(f"  {line}")
        if dry_run or not done.queued:
            return
        report = Cycle(rt).run()
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.pass_obj
def check(app: App) -> None:
    """Validate the config and reach the CRM and Asana with the credentials; say what is wrong in plain words."""
    from syncd import compose
    from syncd.checks import run_checks

    cfg = app.config()
    where = "PostgreSQL" if cfg.on_postgres else cfg.state_path
    click.echo(f"config {cfg.path}: ok ({len(cfg.flows)} flow(s); state in {where})")
    problems = run_checks(compose.wire(cfg), cfg, click.echo)
    click.echo("All checks passed." if not problems else f"{problems} problem(s) found.")
    sys.exit(0 if not problems else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts and monitoring.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show the cursor, the last cycle, ops by state, dead ops and quarantine. Exit 0 healthy, 1 not."""
    from syncd.status_text import format_status, status_json
    from syncd.store import read_status

    cfg = app.config()
    report = read_status(configuration.state(cfg), app.hooks.clock(), cfg.alerts.stale_after_seconds)
    click.echo(json.dumps(status_json(report, cfg.flows), indent=2) if as_json else format_status(report, cfg.flows))
    sys.exit(0 if report.healthy else 1)


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the sandbox files in this folder.")
@click.option(
    "--crm",
    "crm_kind",
    type=click.Choice(["hubspot", "salesforce", "pipedrive"]),
    default="hubspot",
    show_default=True,
    help="Which fake CRM to poll.",
)
def demo(keep: Path | None, crm_kind: str) -> None:
    """Run syncd against the built-in sandbox (fake HubSpot and Asana); no credentials needed."""
    from syncd import compose
    from syncd.engine import Cycle
    from syncd.sandbox.demo import run_demo
    from syncd.status_text import format_status
    from syncd.store import read_status

    def cycle(config_path: Path) -> CycleReport:
        with compose.runtime(configuration.load(config_path)) as rt:
            return Cycle(rt).run()

    def show_status(config_path: Path) -> str:
        return format_status(read_status(configuration.load(config_path).state_path, time.time()))

    run_demo(click.echo, cycle, show_status, keep, crm_kind)


def parse_date_ms(text: str) -> int:
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD or ISO 8601", param_hint="--since") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    logging.getLogger("apscheduler").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def main(hooks: Hooks | None = None, args: list[str] | None = None) -> None:
    """The `syncd` command (`args`: default `sys.argv[1:]`). `hooks` are armed by the tests only."""
    try:
        cli.main(args, standalone_mode=False, obj=hooks)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except SyncdError as exc:
        click.echo(f"Error: {redact(str(exc))}", err=True)
        sys.exit(exc.exit_code)
