"""The `Cycle` in-process over a `Runtime` built from its parts: the fake HubSpot and the fake Asana over HTTP on
127.0.0.1, a real SQLite file, and an injected clock that the tests move instead of sleeping (the settle delay
and every retry time are decided by `rt.clock`). DESIGN.md §3: exactly once, and what each answer means."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd import config
from syncd.engine import Cycle
from syncd.hooks import Hooks
from syncd.http import HttpClient, RetryPolicy
from syncd.models import CycleReport, State
from syncd.ratelimit import TokenBucket
from syncd.runtime import Runtime, Settings
from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sinks import asana as asana_sink
from syncd.sinks.asana import AsanaSink
from syncd.sources import hubspot_profile
from syncd.sources.hubspot import HubSpotSource
from syncd.store import SqliteStore, read_history

from conftest import ASANA_TOKEN, HUBSPOT_TOKEN, RULE

T0 = 1_760_000_000.0  # the injected clock starts here (epoch seconds)
SETTLE = 10.0
RETRY_AFTER = 30


class Crash(BaseException):
    """Thrown from a step hook: unwinds like a dying process (no `except Exception` catches it)."""


def no_sleep(seconds: float) -> None:
    return None


def bucket() -> TokenBucket:
    """Never makes a call wait: rate limiting is not what these tests are about."""
    return TokenBucket(rate=1e6, capacity=1e6, tokens=1e6)


def build_runtime(
    hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, clock: Callable[[], float], hooks: Hooks | None = None
) -> Runtime:
    """One process's runtime: fresh clients, breaker and directory over the database at `db_path`."""
    cfg = config.parse(
        {
            "asana": {"workspace": asana.workspace, "team": asana.team},
            "flow": [{"name": "onboarding", "when": RULE}],
        },
        db_path.with_name("config.toml"),
    )
    common: dict[str, Any] = {
        "timeout": (1.0, 1.0),
        "retry": RetryPolicy(max_tries=2, max_time=5.0, base=0.0),
        "sleep": no_sleep,
        "wall": clock,
    }
    crm = HttpClient(
        "hubspot",
        hubspot.url,
        {"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
        {"default": bucket(), "search": bucket()},
        hubspot_profile.PROFILE,
        **common,
    )
    sink = HttpClient(
        "asana",
        asana.url,
        {"Authorization": f"Bearer {ASANA_TOKEN}"},
        {"default": bucket()},
        asana_sink.PROFILE,
        **common,
    )
    settings = Settings(
        account="default",
        workspace=asana.workspace,
        team=asana.team,
        overlap_seconds=300,
        delay_seconds=1,
        settle_seconds=SETTLE,
        max_attempts=3,
        retry_base_seconds=30,
    )
    return Runtime(
        source=HubSpotSource(crm, cfg.crm_properties),
        sink=AsanaSink(sink, workspace=asana.workspace, team=asana.team),
        store=SqliteStore.open(db_path),
        flows=cfg.flows,
        settings=settings,
        clock=clock,
        hooks=hooks or Hooks(),
    )


def close(rt: Runtime) -> None:
    rt.store.close()
    rt.source.http.close()
    rt.sink.http.close()


@pytest.fixture
def now() -> list[float]:
    """The injected clock: `now[0] += seconds` moves it."""
    return [T0]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncd.db"


@pytest.fixture
def runtime(hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]) -> Iterator[Runtime]:
    rt = build_runtime(hubspot, asana, db_path, lambda: now[0])
    yield rt
    close(rt)


# -- helpers -------------------------------------------------------------------------------------------
def add_deal(hubspot: FakeHubSpot, name: str, stage: str = "contractsent") -> str:
    """A deal modified a minute ago (HubSpot's clock), so the baseline sees it."""
    return hubspot.add_deal(
        dealname=name, dealstage=stage, amount="50000", tier="Enterprise", updated_at=hubspot.now() - 60
    )


def win(hubspot: FakeHubSpot, deal_id: str) -> None:
    """The deal moves to closed won: visible to the next poll once HubSpot's delay has passed."""
    hubspot.update_deal(deal_id, dealstage="closedwon", updated_at=hubspot.now() - 3)


def marker(deal_id: str) -> str:
    return f"[syncd:hubspot:default:{deal_id}:onboarding]"


def cycle(rt: Runtime, **kwargs: Any) -> CycleReport:
    return Cycle(rt, **kwargs).run()


def baseline_then_win(rt: Runtime, hubspot: FakeHubSpot, name: str = "Acme") -> str:
    deal_id = add_deal(hubspot, name)
    report = cycle(rt)
    assert report.baseline and report.ops_queued == 0, report.summary()
    win(hubspot, deal_id)
    return deal_id


def query(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def op_of(db_path: Path, deal_id: str) -> Any:
    (op,) = read_history(db_path, deal_id).ops
    return op


def states(db_path: Path, deal_id: str) -> list[State]:
    return [e.state for e in op_of(db_path, deal_id).events]


# -- baseline ------------------------------------------------------------------------------------------
def test_deals_that_qualify_at_baseline_get_no_op_and_a_newly_qualifying_deal_gets_one_project(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path
) -> None:
    existing = add_deal(hubspot, "Old Co", stage="closedwon")
    fresh = add_deal(hubspot, "Acme")

    first = cycle(runtime)

    assert first.baseline and first.deals_seen == 2 and first.ops_queued == 0
    assert query(db_path, "SELECT count(*) FROM ops") == [(0,)]
    assert asana.projects == [] and asana.create_requests == 0

    win(hubspot, fresh)
    second = cycle(runtime)
    third = cycle(runtime)

    assert not second.baseline and second.ops_queued == 1 and second.ok, second.summary()
    assert third.ops_queued == 0 and third.created == []
    assert [p["name"] for p in asana.projects] == ["Onboarding: Acme"]
    assert marker(fresh) in asana.projects[0]["notes"]
    assert asana.create_requests == 1
    op = op_of(db_path, fresh)
    assert (op.state, op.asana_gid, op.attempts) == (State.CREATED, asana.projects[0]["gid"], 1)
    assert read_history(db_path, existing).ops == ()


# -- a lost answer -------------------------------------------------------------------------------------
def test_a_lost_answer_is_unknown_until_the_settle_delay_then_reconcile_finds_the_marker(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    deal_id = baseline_then_win(runtime, hubspot)
    asana.inject("drop_after_create", route="create")

    cycle(runtime)
    assert op_of(db_path, deal_id).state == State.UNKNOWN
    assert len(asana.projects) == 1 and asana.create_requests == 1  # Asana made it; syncd never heard

    now[0] += SETTLE - 0.5
    early = cycle(runtime)
    assert early.reconciled == 0
    assert op_of(db_path, deal_id).state == State.UNKNOWN
    assert asana.create_requests == 1  # not re-POSTed before the settle delay

    now[0] += 1.0
    late = cycle(runtime)

    assert late.reconciled == 1 and late.ok, late.summary()
    op = op_of(db_path, deal_id)
    assert (op.state, op.asana_gid, op.attempts) == (State.CREATED, asana.projects[0]["gid"], 1)
    assert states(db_path, deal_id)[-2:] == [State.UNKNOWN, State.CREATED]
    assert len(asana.projects_with_marker(marker(deal_id))) == 1
    assert asana.create_requests == 1
    assert asana.duplicates() == {}


def test_a_500_before_creation_is_reconciled_to_pending_and_created_once(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    deal_id = baseline_then_win(runtime, hubspot)
    asana.inject("500", route="create")

    cycle(runtime)
    op = op_of(db_path, deal_id)
    assert op.state == State.UNKNOWN and "500" in (op.last_error or "")
    assert asana.projects == []

    now[0] += SETTLE + 1
    report = cycle(runtime)

    assert report.reconciled == 1 and report.ok, report.summary()
    assert states(db_path, deal_id) == [
        State.PENDING,
        State.IN_FLIGHT,
        State.UNKNOWN,
        State.PENDING,
        State.IN_FLIGHT,
        State.CREATED,
    ]
    assert len(asana.projects_with_marker(marker(deal_id))) == 1
    assert len(asana.projects) == 1 and asana.create_requests == 2
    assert op_of(db_path, deal_id).attempts == 2


# -- answers that are not ambiguous --------------------------------------------------------------------
def test_a_429_leaves_the_op_pending_until_retry_after_and_charges_no_attempt(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    deal_id = baseline_then_win(runtime, hubspot)
    asana.inject("429", route="create", retry_after=RETRY_AFTER)

    cycle(runtime)

    op = op_of(db_path, deal_id)
    assert (op.state, op.attempts, op.last_error) == (State.PENDING, 0, None)
    ((next_attempt_at,),) = query(db_path, "SELECT next_attempt_at FROM ops")
    assert next_attempt_at == now[0] + RETRY_AFTER
    assert runtime.store.due_ops(now[0] + RETRY_AFTER - 0.1, SETTLE) == []
    assert [o.attempts for o in runtime.store.due_ops(now[0] + RETRY_AFTER, SETTLE)] == [0]
    assert runtime.store.pause("asana") == now[0] + RETRY_AFTER  # remembered across restarts
    assert asana.projects == [] and asana.create_requests == 1


def test_a_400_makes_the_op_dead_with_asanas_words(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    (flow,) = runtime.flows
    rt = dataclasses.replace(runtime, flows=(dataclasses.replace(flow, color="neon-pink"),))
    deal_id = baseline_then_win(rt, hubspot)

    report = cycle(rt)

    op = op_of(db_path, deal_id)
    assert op.state == State.DEAD
    assert "answered 400: color: Invalid value: neon-pink" in (op.last_error or "")
    assert len(report.dead) == 1 and not report.ok
    now[0] += 3600
    cycle(rt)
    assert asana.projects == [] and asana.create_requests == 1  # a dead op is not sent again


def win_then_crash(runtime: Runtime, hubspot: FakeHubSpot, point: str) -> str:
    """Baseline, win a deal, then a cycle that dies at `point`; the process is gone, the database stays."""

    def step(name: str) -> None:
        if name == point:
            raise Crash(name)

    dying = dataclasses.replace(runtime, hooks=Hooks(step=step))
    deal_id = baseline_then_win(dying, hubspot)
    with pytest.raises(Crash):
        cycle(dying)
    runtime.store.close()  # its lock goes with it
    return deal_id


def next_process(hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]) -> CycleReport:
    restarted = build_runtime(hubspot, asana, db_path, lambda: now[0])
    try:
        return cycle(restarted)
    finally:
        close(restarted)


# -- a crash between the in_flight commit and the POST -------------------------------------------------
def test_a_crash_after_the_in_flight_commit_is_recovered_by_the_next_process_to_one_project(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    deal_id = win_then_crash(runtime, hubspot, "after_inflight_commit")

    assert op_of(db_path, deal_id).state == State.IN_FLIGHT
    assert asana.create_requests == 0

    now[0] += SETTLE + 1
    report = next_process(hubspot, asana, db_path, now)

    assert report.ok, report.summary()
    events = op_of(db_path, deal_id).events
    assert [e.state for e in events] == [
        State.PENDING,
        State.IN_FLIGHT,
        State.UNKNOWN,
        State.PENDING,
        State.IN_FLIGHT,
        State.CREATED,
    ]
    assert "found in_flight at startup" in (events[2].detail or "")
    assert len(asana.projects_with_marker(marker(deal_id))) == 1 and len(asana.projects) == 1


def test_a_crash_after_the_post_is_adopted_by_reconcile_without_a_second_post(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    deal_id = win_then_crash(runtime, hubspot, "after_post")
    assert op_of(db_path, deal_id).state == State.IN_FLIGHT and len(asana.projects) == 1

    now[0] += SETTLE + 1
    report = next_process(hubspot, asana, db_path, now)

    assert report.reconciled == 1, report.summary()
    assert states(db_path, deal_id) == [State.PENDING, State.IN_FLIGHT, State.UNKNOWN, State.CREATED]
    assert op_of(db_path, deal_id).asana_gid == asana.projects[0]["gid"]
    assert asana.create_requests == 1 and asana.duplicates() == {}


# -- the negative control ------------------------------------------------------------------------------
def test_blind_retry_after_a_lost_answer_creates_a_duplicate(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path, now: list[float]
) -> None:
    blind = dataclasses.replace(runtime, hooks=Hooks(blind_retry=True))
    deal_id = baseline_then_win(blind, hubspot)
    asana.inject("drop_after_create", route="create")
    cycle(blind)
    assert op_of(db_path, deal_id).state == State.UNKNOWN

    now[0] += SETTLE + 1
    cycle(blind)

    assert asana.duplicates() == {marker(deal_id): 2}
    assert asana.create_requests == 2


# -- dry run -------------------------------------------------------------------------------------------
def test_a_dry_run_records_nothing_and_lists_what_it_would_create(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path
) -> None:
    deal_id = baseline_then_win(runtime, hubspot)
    before = {t: query(db_path, f"SELECT * FROM {t}") for t in ("ops", "cursors", "cycles", "deals", "deal_versions")}
    requests_before = len(asana.requests)

    report = cycle(runtime, dry_run=True)

    assert report.dry_run and report.would_create == ["Onboarding: Acme"]
    assert report.created == [] and report.ops_queued == 1  # newly qualifying, counted as the summary names it
    assert {t: query(db_path, f"SELECT * FROM {t}") for t in before} == before
    assert read_history(db_path, deal_id).ops == ()
    assert len(asana.requests) == requests_before  # nothing asked of Asana, let alone created


def test_a_long_listing_reports_progress_per_page(runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana) -> None:
    """Check before create over a team of 350 projects: every listing page is progress for the watchdog."""
    for i in range(350):
        asana.add_project(name=f"Someone else's project {i}")
    baseline_then_win(runtime, hubspot)
    asked: list[int] = []

    def stopping() -> bool:
        asked.append(1)
        return False

    Cycle(runtime, stopping=stopping).run()
    pages = sum(1 for r in asana.requests if r.path.endswith("/projects") and r.method == "GET")
    assert pages >= 5  # 4 pages of live projects, 1 of archived ones
    assert len(asked) >= pages  # asked after each page, besides between pages and ops


def test_a_listing_whose_records_lack_notes_proves_nothing(
    runtime: Runtime, hubspot: FakeHubSpot, asana: FakeAsana, db_path: Path
) -> None:
    asana.add_project(name="Someone else's project")  # a record whose notes could have held the marker
    deal_id = baseline_then_win(runtime, hubspot)
    asana.inject("fields_missing", route="list", times=100)
    report = cycle(runtime)
    assert asana.create_requests == 0, report.summary()
    assert "prove nothing" in " ".join(report.errors)
    assert states(db_path, deal_id) == [State.PENDING]
