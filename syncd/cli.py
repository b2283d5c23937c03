"""The `syncd` command: parse, call, print. With `syncd.operator_cli` (the operator's commands), the only
module that prints. Exit codes: 0 ok, 1 a cycle failed or dead ops remain (status: unhealthy), 2 usage, 74 the
state database or its folder is unusable, 75 another syncd holds the lock, 78 the config is wrong, 130/143
`once` stopped by SIGINT/SIGTERM after its step in progress.

Commands that write take the single-instance lock first and import the rest of syncd (`syncd.compose`) only
then, so a second syncd exits 75 in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncd import config as configuration
from syncd import journal, lock, tokens
from syncd.errors import StoreError, SyncdError
from syncd.hooks import Hooks
from syncd.interrupts import interruptible
from syncd.models import State
from syncd.operator_cli import backfill, flow, history, quarantine, retry
from syncd.redact import redact

if TYPE_CHECKING:
    from syncd.models import CycleReport
    from syncd.runtime import Runtime


@dataclass
class App:
    config_option: str | None
    hooks: Hooks
    log_options: tuple[int, str | None, bool] = (0, None, False)  # -v count, --log-format, daemon

    def config(self) -> configuration.Config:
        cfg = configuration.load(configuration.config_path(self.config_option))
        verbose, log_format, daemon = self.log_options
        if log_format is None and cfg.log_format != "text":
            journal.setup(verbose, cfg.log_format, daemon=daemon)  # [log] format, unless --log-format said
        return cfg

    @contextmanager
    def runtime(self, cfg: configuration.Config) -> Iterator[Runtime]:
        """The runtime under the single-instance lock, taken before the heavy imports: a second syncd exits
        75 at once. A missing token fails before the database is touched."""
        with holding_lock(cfg) as fd:
            from syncd import compose

            with compose.runtime(cfg, fd, self.hooks) as rt:
                yield rt


@contextmanager
def dry_runtime(app: App, cfg: configuration.Config) -> Iterator[Runtime]:
    from syncd import compose

    with compose.dry_runtime(cfg, app.hooks) as rt:
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


class Commands(click.Group):
    """The command list in `--help` with each command's first sentence whole, wrapped, not cut at "..."."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.commands[name].get_short_help_str(limit=1000)) for name in self.list_commands(ctx)]
        rows = [(name, text) for name, text in rows if not self.commands[name].hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


CONFIG_HELP = "Config file (default: $SYNCD_CONFIG or ./config.toml)."
VERBOSE_HELP = "Log more: -v adds each API call, -vv debug detail."
LOG_FORMAT_HELP = "Log lines as text or JSON (default: [log] format)."


@click.group(cls=Commands, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_option", metavar="PATH", help=CONFIG_HELP)
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.option("--log-format", type=click.Choice(journal.FORMATS), help=LOG_FORMAT_HELP)
@click.version_option(None, "-V", "--version", package_name="syncd", prog_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None, verbose: int, log_format: str | None) -> None:
    """Create one Asana project per CRM deal that newly matches a rule, exactly once, by polling."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)
    daemon = ctx.invoked_subcommand == "run"
    journal.setup(verbose, log_format or "text", daemon=daemon)
    hooks = ctx.obj if isinstance(ctx.obj, Hooks) else Hooks()
    ctx.obj = App(config_option, hooks, (verbose, log_format, daemon))


def _config_after(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(App).config_option = value  # type: ignore[union-attr]


def _logging_after(ctx: click.Context, param: click.Parameter, value: int | str | None) -> None:
    """-v or --log-format after the command: add to what was given before it, and set logging up again."""
    app = ctx.find_object(App)
    if not value or app is None:
        return
    verbose, log_format, daemon = app.log_options
    if isinstance(value, int):
        verbose += value
    else:
        log_format = value
    app.log_options = (verbose, log_format, daemon)
    journal.setup(verbose, log_format or "text", daemon=daemon)


def options_after_the_command(group: click.Group) -> None:
    """`syncd status --config X` and `syncd once -v` as well as `syncd --config X status`: the global options
    are also options of every command (and of the commands of `syncd flow`)."""
    for command in group.commands.values():
        command.params += [
            click.Option(["--config"], metavar="PATH", help=CONFIG_HELP, expose_value=False, callback=_config_after),
            click.Option(
                ["-v", "--verbose"], count=True, help=VERBOSE_HELP, expose_value=False, callback=_logging_after
            ),
            click.Option(
                ["--log-format"],
                type=click.Choice(journal.FORMATS),
                help=LOG_FORMAT_HELP,
                expose_value=False,
                callback=_logging_after,
            ),
        ]
        if isinstance(command, click.Group):
            options_after_the_command(command)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be created; change nothing (no cursor move, no ops).")
@click.pass_obj
def once(app: App, dry_run: bool) -> None:
    """Poll the CRM once and create any missing Asana projects (for cron)."""
    cfg = app.config()
    with dry_runtime(app, cfg) if dry_run else app.runtime(cfg) as rt, interruptible() as signal:
        from syncd.engine import Cycle
        from syncd.operator import apply_requests

        for line in [] if dry_run else apply_requests(rt):
            click.echo(f"Applied {line}")
        report = Cycle(rt, dry_run=dry_run, stopping=signal.stopping, stopped_by=lambda: signal.name).run()
        dead = rt.store.op_count(State.DEAD)
    click.echo(report.summary())
    if report.auth_failures and (note := tokens.shadow_note(configuration.token_names(cfg))):
        click.echo(note)
    if dry_run:
        click.echo("Dry run: nothing was recorded or created.")
    if dead:
        click.echo(f"{dead} dead op(s) need a human: see 'syncd status'.")
    if signal.stopping():
        sys.exit(signal.exit_code)
    sys.exit(0 if not report.errors and not dead else 1)


ACCOUNTS_HELP = "A folder of configs, one per CRM account, all on one PostgreSQL database: serve a fair share of them."


@cli.command()
@click.option("--accounts", type=click.Path(path_type=Path), metavar="DIR", help=ACCOUNTS_HELP)
@click.pass_obj
def run(app: App, accounts: Path | None) -> None:
    """Run cycles every [schedule] interval_seconds until SIGTERM; SIGHUP re-reads the config (for systemd)."""
    if accounts is not None:
        from syncd import fleet
        from syncd.accounts import load_accounts

        fleet.serve(lambda: load_accounts(accounts), app.hooks)
        return
    cfg = app.config()
    with holding_lock(cfg) as fd:
        from syncd.service import serve

        serve(cfg, app.config, fd, app.hooks)


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
    if not history.versions and not history.ops and not history.quarantined:
        nothing = (
            f"syncd has recorded nothing for deal {deal_id}: it was never polled (check the id, and that "
            "it changed after syncd started watching)."
        )
        if as_json:
            click.echo(json.dumps({"deal_id": deal_id, "recorded": False, "message": nothing}))
        else:
            click.echo(nothing, err=True)
        sys.exit(1)
    click.echo(json.dumps(history_json(history), indent=2) if as_json else format_explain(history, cfg.flows))


@cli.command()
@click.option("--offline", is_flag=True, help="Only the config, the rules and the database: no token, no network.")
@click.pass_obj
def check(app: App, offline: bool) -> None:
    """Validate the config and reach the CRM and Asana with the credentials; say what is wrong in plain words."""
    from syncd.checks import check_offline, run_checks

    cfg = app.config()
    where = "PostgreSQL" if cfg.on_postgres else cfg.state_path
    click.echo(f"config {cfg.path}: ok ({len(cfg.flows)} flow(s); state in {where})")
    if offline:
        problems = check_offline(cfg, click.echo)
    else:
        from syncd import compose

        problems = run_checks(compose.wire(cfg), cfg, click.echo)
    if problems and (note := tokens.shadow_note(configuration.token_names(cfg))):
        click.echo(note)
    click.echo("All checks passed." if not problems else f"{problems} problem(s) found.")
    sys.exit(0 if not problems else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts and monitoring.")
@click.option(
    "--accounts", type=click.Path(path_type=Path), metavar="DIR", help="One line per account of this folder of configs."
)
@click.pass_obj
def status(app: App, as_json: bool, accounts: Path | None) -> None:
    """Show the cursor, the last cycle, ops by state, dead ops and quarantine. Exit 0 healthy, 1 not."""
    from syncd.status_text import format_status, status_json
    from syncd.store import read_status

    if accounts is not None:
        from syncd.accounts import load_accounts, status_line

        healthy = True
        for account in load_accounts(accounts):
            try:
                line, ok = status_line(account, read_status(account.state, app.hooks.clock()))
            except StoreError as exc:
                line, ok = status_line(account, None, redact(str(exc)))
            click.echo(line)
            healthy = healthy and ok
        sys.exit(0 if healthy else 1)
    cfg = app.config()
    state = configuration.state(cfg)
    try:
        report = read_status(state, app.hooks.clock(), cfg.alerts.stale_after_seconds)
    except StoreError as exc:  # a database that cannot be read is the unhealthiest state of all
        problem = redact(str(exc))
        shown = state if isinstance(state, Path) else state.shown
        out = {"database": str(shown), "healthy": False, "problems": [problem]}
        text = f"syncd status: {shown}\n  healthy      NO: {problem}"
        click.echo(json.dumps(out, indent=2) if as_json else text)
        sys.exit(1)
    click.echo(json.dumps(status_json(report, cfg.flows), indent=2) if as_json else format_status(report, cfg.flows))
    sys.exit(0 if report.healthy else 1)


@cli.command("reset-rate")
@click.pass_obj
def reset_rate(app: App) -> None:
    """Forget the Asana request rate learned for the configured workspace, e.g. after a plan change."""
    from syncd.operator import reset_rate as forget

    click.echo(forget(app.config()))


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
    from syncd.sandbox.demo import FILES, run_demo

    if keep and (taken := [name for name in FILES if (keep / name).exists()]):
        raise click.BadParameter(
            f"{keep} already holds {', '.join(taken)}; the demo would replace them. Choose a new or empty folder.",
            param_hint="--keep",
        )
    from syncd.status_text import format_status
    from syncd.store import read_status

    def cycle(config_path: Path) -> CycleReport:
        with compose.runtime(configuration.load(config_path)) as rt:
            return Cycle(rt).run()

    def show_status(config_path: Path) -> str:
        return format_status(read_status(configuration.state(configuration.load(config_path)), time.time()))

    run_demo(click.echo, cycle, show_status, keep, crm_kind)


for command in (retry, backfill, flow, history, quarantine):
    cli.add_command(command)
options_after_the_command(cli)


def main(hooks: Hooks | None = None, args: list[str] | None = None) -> None:
    """The `syncd` command (`args`: default `sys.argv[1:]`). `hooks` are armed by the tests only."""
    try:
        cli.main(args, standalone_mode=False, obj=hooks)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted at once (a second signal); the next run recovers what was in flight.", err=True)
        sys.exit(130)
    except SyncdError as exc:
        message = redact(str(exc))
        if "--json" in (sys.argv[1:] if args is None else args):  # a script reading stdout gets JSON too
            click.echo(json.dumps({"error": message, "exit_code": exc.exit_code}))
        click.echo(f"Error: {message}", err=True)
        sys.exit(exc.exit_code)
