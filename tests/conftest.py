"""Fixtures are nouns: a fake `hubspot`, a fake `asana`, a `workdir` with a config, and `syncd` to run the real
command in a subprocess (real SQLite files, real HTTP on 127.0.0.1, real exit codes, real `kill -9`)."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from syncd.cli import main
from syncd.hooks import Hooks
from syncd.journal import LOGGERS
from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.configfile import config_toml
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sandbox.kit import DRIVERS, CrmDriver, HubSpot

CANARIES = {  # credentials no output, log or database may ever contain
    "HUBSPOT_TOKEN": "pat-na1-canary-hubspot-0f3c9a7e",
    "SALESFORCE_CLIENT_ID": "3MVG9canary-client-id-55aa",
    "SALESFORCE_CLIENT_SECRET": "canary-client-secret-9b1e",
    "SALESFORCE_REFRESH_TOKEN": "5Aep861canary-refresh-7c2d",
    "PIPEDRIVE_TOKEN": "canary-pipedrive-token-41f0",
}
HUBSPOT_TOKEN = CANARIES["HUBSPOT_TOKEN"]
ASANA_TOKEN = "2/canary-asana-77d41be2c9"

RULE = HubSpot.rule
CI = os.environ.get("CI") == "true"


def unless_ci(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip when a tool or file the test needs is missing on a developer's machine; under CI=true never skip:
    the test runs and fails, so a missing install step cannot pass as green."""
    return pytest.mark.skipif(missing and not CI, reason=reason)


def require(missing: bool, reason: str) -> None:
    """`unless_ci` inside a test: skip here, fail under CI=true."""
    if missing:
        (pytest.fail if CI else pytest.skip)(reason)


POSTGRES_URL = os.environ.get("SYNCD_TEST_POSTGRES_URL", "")
NO_POSTGRES = (
    "No PostgreSQL for the tests: set SYNCD_TEST_POSTGRES_URL to a database URL "
    "(e.g. postgresql://syncd@127.0.0.1:55432/postgres after initdb and pg_ctl start, as .ci/run does)."
)


def in_schema(url: str, schema: str) -> str:
    """`url` with libpq's `options` setting the search path, so every table syncd creates lands in `schema`."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres() -> Iterator[str]:
    """A URL of a fresh, empty schema in the test database (SYNCD_TEST_POSTGRES_URL), dropped afterwards.
    Without a server: skipped with a sentence saying how to start one, and a failure under CI=true."""
    require(not POSTGRES_URL, NO_POSTGRES)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield in_schema(POSTGRES_URL, schema)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot(token=HUBSPOT_TOKEN)
    fake.declare_property("asana_project_url")  # the write-back target of the suite's flows
    fake.declare_property("tier", "enumeration", ("Enterprise", "Growth", "Starter"))  # the suite's rule reads it
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def asana() -> Iterator[FakeAsana]:
    fake = FakeAsana(token=ASANA_TOKEN)
    fake.start()
    yield fake
    fake.stop()


def config_text(hubspot: FakeHubSpot, asana: FakeAsana, /, **sections: Any) -> str:
    """A test config; `sections` override keys per table, e.g. crm={"page_size": 50}."""
    tables: dict[str, dict[str, Any]] = {
        "state": {"path": "syncd.db"},
        "crm": {
            "kind": "hubspot",
            "base_url": hubspot.url,
            "token_env": "HUBSPOT_TOKEN",
            "overlap_seconds": 300,
            "delay_seconds": 1,
            "search_per_second": 1000,
            "requests_per_10_seconds": 10000,
        },
        "asana": {
            "base_url": asana.url,
            "token_env": "ASANA_TOKEN",
            "workspace": asana.workspace,
            "team": asana.team,
            "requests_per_minute": 60000,
            "settle_seconds": 1.2,
        },
        "http": {"connect_timeout": 1, "read_timeout": 1, "retry_base_seconds": 0, "max_tries": 4},
    }
    flows = sections.pop("flows", None) or [{"name": "onboarding", "when": RULE}]
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    project = {"name": "Onboarding: {name}", "notes": "From deal {id}."}
    return config_toml(tables, [{"project": project, **flow} for flow in flows])


@dataclass
class Syncd:
    """Runs `python -m syncd` against a workdir. `config(**sections)` rewrites its config."""

    workdir: Path
    hubspot: FakeHubSpot
    asana: FakeAsana
    offset: float = 0.0  # how far `tick` has moved syncd's clock and the fakes' clocks ahead of real time
    postgres: str | None = None  # the state in this PostgreSQL schema (`[state] url`) instead of syncd.db

    def clock(self) -> float:
        return time.time() + self.offset

    def tick(self, seconds: float) -> None:
        """Let `seconds` pass for syncd and both fakes at once, instead of sleeping (a settle delay, a
        backoff, a listing's lag). Real processes started afterwards run on the same clock."""
        self.offset += seconds
        self.hubspot.clock_offset += seconds
        self.asana.clock_offset += seconds

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    @property
    def db_path(self) -> Path:
        return self.workdir / "syncd.db"

    def config(self, **sections: Any) -> None:
        if self.postgres and "url_env" not in sections.get("state", {}):
            sections["state"] = {"url": self.postgres, **sections.get("state", {})}
        self.config_path.write_text(config_text(self.hubspot, self.asana, **sections))

    def env(self, **extra: str | None) -> dict[str, str]:
        """The subprocess environment: the canary tokens, plus `extra` (None removes a variable)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "HUBSPOT", "ASANA"))}
        env.update({"HUBSPOT_TOKEN": HUBSPOT_TOKEN, "ASANA_TOKEN": ASANA_TOKEN, "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def command(self, *args: str, crash_at: str | None = None) -> list[str]:
        """`python -m syncd ...`, or the hooked launcher (`tests/hooked.py`) when the process must SIGKILL
        itself at a named step or run on the moved clock."""
        hooks = [
            *(["--crash-at", crash_at] if crash_at else []),
            *(["--clock-offset", repr(self.offset)] if self.offset else []),
        ]
        launcher = [str(Path(__file__).with_name("hooked.py")), *hooks] if hooks else ["-m", "syncd"]
        return [sys.executable, *launcher, "--config", str(self.config_path), *args]

    def __call__(
        self,
        *args: str,
        timeout: float = 60,
        crash_at: str | None = None,
        blind_retry: bool = False,
        **env: str | None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end: in this process (the real CLI, environment and streams swapped in), or
        as a real process when it must die by SIGKILL at `crash_at`."""
        if crash_at:
            return subprocess.run(
                self.command(*args, crash_at=crash_at),
                env=self.env(**env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        argv = ["--config", str(self.config_path), *args]
        return in_process(argv, self.env(**env), Hooks(blind_retry=blind_retry, clock=self.clock))

    def start(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def ok(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        result = self(*args, **env)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def ago(self, seconds: float = 3.0) -> float:
        """A modification time `seconds` before HubSpot's clock: visible once the delay has passed."""
        return self.hubspot.now() - seconds

    def query(self, sql: str, *params: Any) -> list[tuple]:
        if self.postgres:
            with psycopg.connect(self.postgres, autocommit=True) as pg:
                return [tuple(r) for r in pg.execute(sql.replace("?", "%s"), params).fetchall()]  # type: ignore[arg-type]
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def op_states(self) -> dict[str, int]:
        return dict(self.query("SELECT state, count(*) FROM ops GROUP BY state"))


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`os.environ` is exactly `env` inside (a `.env` the command loads is forgotten afterwards)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def in_process(argv: list[str], env: dict[str, str], hooks: Hooks) -> subprocess.CompletedProcess[str]:
    """The `syncd` command run by `syncd.cli.main` in this process, as a subprocess would see it: its own
    environment, stdout and stderr, and its exit code. Logging is put back as pytest had it."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in LOGGERS})
    code: int = 0
    try:
        with environment(env), redirect_stdout(out), redirect_stderr(err):
            main(hooks, argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    return subprocess.CompletedProcess(["syncd", *argv], code, out.getvalue(), err.getvalue())


STATE = os.environ.get("SYNCD_TEST_STATE", "sqlite")  # "postgres": the `syncd` runner keeps its state there


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, the tests about the SQLite file and its flock do not apply: deselected, not skipped."""
    if STATE != "postgres":
        return
    kept = [item for item in items if item.get_closest_marker("sqlite_file") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture
def syncd(request: pytest.FixtureRequest, tmp_path: Path, hubspot: FakeHubSpot, asana: FakeAsana) -> Syncd:
    """The `syncd` command on a workdir; with SYNCD_TEST_STATE=postgres, its state in a fresh PostgreSQL
    schema instead of syncd.db (tests about the SQLite file itself do not apply there)."""
    url = request.getfixturevalue("postgres") if STATE == "postgres" else None
    runner = Syncd(tmp_path, hubspot, asana, postgres=url)
    runner.config()
    return runner


@pytest.fixture
def pg_syncd(tmp_path: Path, hubspot: FakeHubSpot, asana: FakeAsana, postgres: str) -> Syncd:
    """`syncd` with its state in a fresh PostgreSQL schema (`[state] url`)."""
    runner = Syncd(tmp_path, hubspot, asana, postgres=postgres)
    runner.config()
    return runner


def win(syncd: Syncd, deal_id: str, **changes: Any) -> None:
    syncd.hubspot.update_deal(deal_id, dealstage="closedwon", updated_at=syncd.ago(), **changes)


FAST = {
    "http": {"connect_timeout": 1, "read_timeout": 0.5, "retry_base_seconds": 0, "max_tries": 4},
    "asana": {"settle_seconds": 0.6},
}


def prospects(syncd: Syncd, n: int, **properties: str) -> list[str]:
    """`n` Enterprise deals not won yet, changed a minute ago. `properties` are added to every deal."""
    return [
        syncd.hubspot.add_deal(
            dealname=f"Deal {i}",
            dealstage="contractsent",
            amount="50000",
            tier="Enterprise",
            updated_at=syncd.ago(60),
            **properties,
        )
        for i in range(n)
    ]


def qualify(syncd: Syncd, n: int, **properties: str) -> list[str]:
    """`n` deals recorded in a baseline, then won: each newly qualifies. `properties` are added to every deal."""
    ids = prospects(syncd, n, **properties)
    syncd.ok("once")  # baseline
    for deal in ids:
        win(syncd, deal)
    return ids


def integrity_ok(syncd: Syncd) -> None:
    if not syncd.postgres:  # PostgreSQL keeps its own files consistent; its constraints hold on every write
        assert syncd.query("PRAGMA integrity_check") == [("ok",)]


def settle_until_done(syncd: Syncd, rounds: int = 12) -> None:
    """Clean runs until no op is pending or awaiting reconcile (each unknown op needs the settle delay)."""
    for _ in range(rounds):
        result = syncd("once")
        assert result.returncode in (0, 1), result.stderr
        states = syncd.op_states()
        if set(states) <= {"created", "dead"}:
            return
        syncd.tick(0.7)
    raise AssertionError(f"ops did not settle: {syncd.op_states()}")


def assert_exactly_once(syncd: Syncd, deals: list[str], crm: str = "hubspot") -> None:
    assert syncd.asana.duplicates() == {}
    for deal in deals:
        found = syncd.asana.projects_with_marker(f"[syncd:{crm}:default:{deal}:onboarding]")
        assert len(found) == 1, f"deal {deal}: {len(found)} projects"
    assert len(syncd.asana.projects) == len(deals)
    assert syncd.op_states() == {"created": len(deals)}
    gids = {gid for (gid,) in syncd.query("SELECT asana_gid FROM ops")}
    assert gids == {p["gid"] for p in syncd.asana.projects}


class CrmSyncd(Syncd):
    """`Syncd` against any CRM's fake, through its driver in `syncd.sandbox.kit`."""

    def __init__(self, workdir: Path, crm: CrmDriver, asana: FakeAsana) -> None:
        super().__init__(workdir, crm.fake, asana)
        self.crm = crm

    def config(self, **sections: Any) -> None:
        crm_section = {**self.crm.config(), "requests_per_10_seconds": 100000, **sections.pop("crm", {})}
        flows = sections.pop("flows", None) or [{"name": "onboarding", "when": self.crm.rule}]
        super().config(crm=crm_section, flows=flows, **sections)

    def env(self, **extra: str | None) -> dict[str, str]:
        return super().env(**{**self.crm.env(), **extra})

    def ago(self, seconds: float = 3.0) -> float:
        return self.crm.ago(seconds)


@pytest.fixture(params=["hubspot", "salesforce", "pipedrive"])
def crm_syncd(request: pytest.FixtureRequest, tmp_path: Path, asana: FakeAsana) -> Iterator[CrmSyncd]:
    crm = DRIVERS[request.param](CANARIES).start()
    runner = CrmSyncd(tmp_path, crm, asana)
    runner.config()
    yield runner
    crm.stop()


@contextmanager
def running_daemon(
    daemon: subprocess.Popen[str], until: Any = None, within: float = 10.0
) -> Iterator[subprocess.Popen[str]]:
    """A daemon the test started (`syncd.start("run")`), handed over once `until()` (a no-argument callable) is
    true or `within` seconds have passed. Whatever the test asserts, the daemon does not outlive it: one the
    test did not stop is killed (SIGKILL) and reaped."""
    try:
        deadline = time.time() + within
        while until is not None and not until() and time.time() < deadline:
            time.sleep(0.05)
        yield daemon
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
