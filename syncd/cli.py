"""The `syncd` command: parse, call, print. The only module that prints. Exit codes: 0 ok, 1 a cycle failed
or dead ops remain (status: unhealthy), 2 usage, 75 another syncd holds the lock, 78 the config is wrong.

Commands that write take the single-instance lock first and import the rest of syncd (`syncd.compose`) only
then, so a second syncd exits 75 in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncd import config as configuration
from syncd import lock
from syncd.errors import ConfigError, SyncdError
from syncd.redact import RedactingFilter, redact

if TYPE_CHECKING:
    from syncd.models import CycleReport


@dataclass
class App:
    config_option: str | None

    def config(self) -> configuration.Config:
        return configuration.load(configuration.config_path(self.config_option))


@contextmanager
def holding_lock(cfg: configuration.Config) -> Iterator[int]:
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
    ctx.obj = App(config_option)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be created; change nothing (no cursor move, no ops).")
@click.pass_obj
def once(app: App, dry_run: bool) -> None:
    """Poll the CRM once and create any missing Asana projects (for cron)."""
    cfg = app.config()
    with holding_lock(cfg) as fd:
        from syncd import compose

        parts = compose.build(cfg)  # a missing token fails here, before the database is touched
        with compose.locked_store(cfg, fd) as store:
            report = compose.one_cycle(cfg, store, parts, dry_run=dry_run)
            compose.after_cycle(cfg, store, parts, report)
            dead = store.op_count("dead")
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
        from syncd import compose
        from syncd.daemon import run_forever
        from syncd.store import read_status

        parts = compose.build(cfg)
        with compose.locked_store(cfg, fd) as store:

            def cycle(stopping: threading.Event) -> CycleReport:
                report = compose.one_cycle(cfg, store, parts, stopping=stopping.is_set)
                compose.after_cycle(cfg, store, parts, report)
                logging.getLogger("syncd").info("cycle finished:\n%s", report.summary())
                return report

            def reload() -> None:
                """SIGHUP, between cycles: switch to the config file as it is now if it is valid; a ConfigError
                keeps the running config (logged, and shown in `systemctl status`)."""
                nonlocal cfg, parts
                new = app.config()
                if new.state_path != cfg.state_path:
                    raise ConfigError(
                        f"{new.path} [state]: path changed to {new.state_path}; this syncd keeps using "
                        f"{cfg.state_path} and its lock. Restart syncd to switch databases."
                    )
                new_parts = dataclasses.replace(compose.build(new), breaker=parts.breaker)
                if new.interval_seconds != cfg.interval_seconds:
                    logging.getLogger("syncd").warning(
                        "[schedule] interval_seconds changed to %g; it takes effect when syncd restarts",
                        new.interval_seconds,
                    )
                cfg, parts = new, new_parts

            server = None
            if parts.metrics and cfg.metrics_listen:
                parts.metrics.observe_status(read_status(cfg.state_path, time.time()))
                server, _ = parts.metrics.serve(cfg.metrics_listen)
            try:
                run_forever(cycle, cfg.interval_seconds, reload=reload)
            finally:
                if server:
                    server.shutdown()
                    server.server_close()
                if parts.notifier:
                    parts.notifier.close()


@cli.command()
@click.argument("deal_id")
@click.pass_obj
def retry(app: App, deal_id: str) -> None:
    """Send a deal's dead ops back through reconcile, then run a cycle (never a blind re-create)."""
    cfg = app.config()
    with holding_lock(cfg) as fd:
        from syncd import compose, engine

        parts = compose.build(cfg)
        with compose.locked_store(cfg, fd) as store:
            keys = engine.retry(store, deal_id, time.time(), parts.settings)
            if not keys:
                click.echo(f"Deal {deal_id} has no dead op. 'syncd status' lists the dead ones.")
                sys.exit(1)
            click.echo(f"Reconciling {len(keys)} op(s) of deal {deal_id}: {', '.join(keys)}")
            report = compose.one_cycle(cfg, store, parts)
            compose.after_cycle(cfg, store, parts, report)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.argument("deal_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def explain(app: App, deal_id: str, as_json: bool) -> None:
    """Why did (or didn't) this deal get a project? Versions, rule evaluations, op history."""
    from syncd.store import open_readonly

    cfg = app.config()
    with open_readonly(cfg.state_path) as store:
        history = store.history(deal_id)
    if not history["versions"] and not history["ops"]:
        click.echo(
            f"syncd has recorded nothing for deal {deal_id}: it was never polled (check the id, and that "
            "it changed after syncd started watching).",
            err=True,
        )
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(history, indent=2))
        return
    click.echo(format_explain(history, cfg))


@cli.command()
@click.option(
    "--since",
    "since",
    required=True,
    metavar="DATE",
    help="Only deals modified at or after this date (YYYY-MM-DD or ISO 8601, UTC).",
)
@click.option("--dry-run", is_flag=True, help="List the projects it would create; change nothing.")
@click.pass_obj
def backfill(app: App, since: str, dry_run: bool) -> None:
    """Create projects for deals that already qualified before syncd watched (never a duplicate)."""
    since_ms = parse_date_ms(since)
    cfg = app.config()
    with holding_lock(cfg) as fd:
        from syncd import compose, engine

        parts = compose.build(cfg)
        with compose.locked_store(cfg, fd) as store:
            names = engine.backfill(
                store,
                cfg.flows,
                parts.settings,
                crm=parts.source.kind,
                since_ms=since_ms,
                now=time.time(),
                dry_run=dry_run,
            )
            verb = "Would queue" if dry_run else "Queued"
            click.echo(f"{verb} {len(names)} project(s) for deals that qualified before syncd watched:")
            for name in names:
                click.echo(f"  {name}")
            if dry_run or not names:
                return
            report = compose.one_cycle(cfg, store, parts)
            compose.after_cycle(cfg, store, parts, report)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.pass_obj
def check(app: App) -> None:
    """Validate the config and reach the CRM and Asana with the credentials; say what is wrong in plain words."""
    from syncd import compose
    from syncd.errors import AuthError, RemoteError

    cfg = app.config()
    click.echo(f"config {cfg.path}: ok ({len(cfg.flows)} flow(s); state in {cfg.state_path})")
    parts = compose.build(cfg)
    problems = 0
    try:
        page = next(iter(parts.source.pages(int(time.time() * 1000) - 60_000, 0)))
        click.echo(
            f"{parts.source.kind}: ok, the credentials can read deals ({len(page.deals)} changed in the last minute)"
        )
    except AuthError as exc:
        problems += 1
        click.echo(
            f"{parts.source.kind}: the credentials were rejected ({exc.status}). Check the variables named "
            f"in [crm] and the app's read access to deals. {exc}"
        )
    except RemoteError as exc:
        problems += 1
        click.echo(f"{parts.source.kind}: could not read deals: {exc}")
    try:
        for line in parts.sink.check():
            click.echo(f"asana: {line}")
    except AuthError as exc:
        problems += 1
        click.echo(
            f"asana: the token in {cfg.asana.token_env} was rejected ({exc.status}); create a new personal "
            f"access token or check its access to the workspace. {exc}"
        )
    except RemoteError as exc:
        problems += 1
        hint = " Check [asana] workspace and team." if exc.status == 404 else ""
        click.echo(f"asana: {exc}.{hint}")
    click.echo("All checks passed." if not problems else f"{problems} problem(s) found.")
    sys.exit(0 if not problems else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts and monitoring.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show the cursor, the last cycle, ops by state, dead ops and quarantine. Exit 0 healthy, 1 not."""
    from syncd.store import read_status

    cfg = app.config()
    report = read_status(cfg.state_path, time.time())
    click.echo(json.dumps(report, indent=2) if as_json else format_status(report))
    sys.exit(0 if report["healthy"] else 1)


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
    from syncd.sandbox.demo import run_demo
    from syncd.store import read_status

    def cycle(config_path: Path) -> CycleReport:
        cfg = configuration.load(config_path)
        with compose.locked_store(cfg) as store:
            return compose.one_cycle(cfg, store)

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


def format_explain(history: dict, cfg: configuration.Config) -> str:
    lines = [f"Deal {history['deal_id']}: {len(history['versions'])} version(s) recorded"]
    flows = {flow.name: flow for flow in cfg.flows}
    for v in history["versions"]:
        verdicts = ", ".join(
            f"{name} {'TRUE' if ok else 'false'}{' (entered the rule)' if name in v['newly'] else ''}"
            for name, ok in v["matches"].items()
        )
        lines.append(
            f"  {v['updated_at']}  stage={v['values'].get('stage')!r} amount={v['values'].get('amount')!r}"
            f"  -> {verdicts}"
        )
    if history["versions"]:
        latest = history["versions"][-1]["values"]
        for name, flow in flows.items():
            verdict = "true" if flow.rule.evaluate(latest) else "false"
            lines.append(f"Flow {name}: when {flow.rule.source}  -> {verdict} for the latest version")
            lines += [f"    {line}" for line in flow.rule.explain(latest)]
        if len(history["versions"]) == 1 and not history["ops"]:
            lines.append(
                "  (A deal first seen already matching during the baseline gets no project: see 'syncd backfill'.)"
            )
    for op in history["ops"]:
        where = f" project {op['asana_gid']} {op['asana_url'] or ''}" if op["asana_gid"] else ""
        lines.append(f"Op {op['op_key']}: {op['state']}{where} (attempts: {op['attempts']})")
        lines += [f"    {e['at']}  {e['state']:<9} {e['detail']}" for e in op["events"]]
    if not history["ops"]:
        lines.append("No op: no flow went from false to true for this deal after the baseline.")
    return "\n".join(lines)


def format_status(s: dict) -> str:
    ops = s["ops"]
    last = s["last_cycle"]
    age = f" ({s['cursor_age_seconds']:.0f}s ago)" if s["cursor_age_seconds"] is not None else ""
    lines = [
        f"syncd status: {s['database']}",
        f"  healthy      {'yes' if s['healthy'] else 'NO: ' + '; '.join(s['problems'])}",
        f"  cursor       {s['cursor'] or 'not set (no cycle has recorded a baseline yet)'}{age}",
        f"  last cycle   {'none' if not last else ('ok' if last['ok'] else 'FAILED')}"
        + (f", finished {last['finished_at']}" if last else "")
        + (f": {last['error']}" if last and last["error"] else ""),
        f"  last success {s['last_success_at'] or 'never'}",
        f"  deals        {s['deals']}",
        "  ops          " + " · ".join(f"{state} {count}" for state, count in ops.items()),
        f"  quarantine   {s['quarantine']} record(s)",
        f"  asana calls  {s['breaker']}" + (" (paused after repeated failures)" if s["breaker"] == "open" else ""),
    ]
    if s["effects"]:
        lines.append("  follow-ups   " + " · ".join(f"{state} {count}" for state, count in s["effects"].items()))
    for service, q in s["quota"].items():
        lines.append(f"  {service} quota  {q['remaining']:,} of {q['limit']:,} daily calls left")
    if s["next_run_at"]:
        lines.append(f"  next run     {s['next_run_at']} (if syncd run is running)")
    lines += [f"  ALERT: {key}" for key in s["alerts_firing"]]
    lines += [f"  dead: deal {d['deal_id']} (flow {d['flow']}): {d['reason']}" for d in s["dead_ops"]]
    lines += [f"  quarantined: record {q['record_id']}: {q['reason']}" for q in s["quarantined_records"]]
    return "\n".join(lines)


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    logging.getLogger("apscheduler").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except SyncdError as exc:
        click.echo(f"Error: {redact(str(exc))}", err=True)
        sys.exit(exc.exit_code)
