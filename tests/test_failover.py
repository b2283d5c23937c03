"""Two `syncd run` on one PostgreSQL database, against the fakes (issue 15): one holds the account's lease,
the other stands by and takes over by itself. Real processes, real `kill -9`, real SIGSTOP.

- The holder is killed (by the test at a random moment, or by itself right after an `in_flight` commit) again
  and again: no deal gets two projects, none gets none, and the failover times are printed.
- A holder frozen right after its `in_flight` commit, past its lease, then thawed: it sends nothing, because it
  checks its lease before each POST. The same test with that check disabled duplicates (the negative control).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_daemon import Systemd

from conftest import FAST, Syncd, win

LEASE = 3.0  # > connect_timeout + read_timeout + 1 s (FAST: 1 + 0.5)
INTERVAL = 1.0
HOOKED = str(Path(__file__).with_name("hooked.py"))


def configure(syncd: Syncd) -> None:
    syncd.config(state={"lease_seconds": LEASE}, schedule={"interval_seconds": INTERVAL}, **FAST)


class Fleet:
    """The `syncd run` processes of one test, each logging to its own file; all killed and reaped at the end."""

    def __init__(self, syncd: Syncd) -> None:
        self.syncd, self.procs, self.logs = syncd, [], []  # type: ignore[var-annotated]

    def launch(self, *hooks: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.syncd.workdir / f"run-{len(self.procs)}.log", "w")  # noqa: SIM115 (closed in close())
        launcher = [HOOKED, *hooks] if hooks else ["-m", "syncd"]
        argv = [sys.executable, *launcher, "--config", str(self.syncd.config_path), "run"]
        proc = subprocess.Popen(
            argv, env=self.syncd.env(**(env or {})), stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for log in self.logs:
            log.close()


@contextmanager
def fleet(syncd: Syncd) -> Iterator[Fleet]:
    running = Fleet(syncd)
    try:
        yield running
    finally:
        running.close()


def until(condition: Callable[[], object], within: float = 30.0, what: str = "") -> None:
    """Poll `condition` (a bound on how long the test may hang, not an assertion about speed)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what or condition} after {within:g}s")
        time.sleep(0.05)


def lease(syncd: Syncd) -> tuple[int, int] | None:
    """(pid, fence) of the account's lease holder, or None before anyone took it."""
    rows = syncd.query("SELECT holder, fence FROM leases WHERE account = 'default'")
    return (int(rows[0][0].rpartition(":")[2]), int(rows[0][1])) if rows else None


def baseline_done(syncd: Syncd) -> bool:
    try:
        return bool(syncd.query("SELECT 1 FROM meta WHERE key = 'baseline_done'"))
    except Exception:  # the tables do not exist before the first process created them
        return False


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def seed(syncd: Syncd, n: int) -> list[str]:
    return [
        syncd.hubspot.add_deal(
            dealname=f"Deal {i}", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
        )
        for i in range(n)
    ]


def assert_exactly_once(syncd: Syncd, deals: list[str]) -> None:
    assert syncd.asana.duplicates() == {}
    for deal in deals:
        assert len(syncd.asana.projects_with_marker(f"[syncd:hubspot:default:{deal}:onboarding]")) == 1, deal
    assert len(syncd.asana.projects) == len(deals)
    assert syncd.op_states() == {"created": len(deals)}


def new_won_deals(syncd: Syncd, n: int) -> list[str]:
    return [
        syncd.hubspot.add_deal(
            dealname="Won", dealstage="closedwon", amount="50000", tier="Enterprise", updated_at=syncd.ago(2)
        )
        for _ in range(n)
    ]


def failovers(syncd: Syncd, kills: int, seed_value: int, per_round: int = 2) -> tuple[list[float], int]:
    """Kill the holder `kills` times at random moments while new deals qualify; standbys started to replace
    the dead are, one in two, set to die by themselves right after their N-th `in_flight` commit. Returns the
    seconds from each kill to the next lease, and how many holders died by themselves besides."""
    rng = random.Random(seed_value)
    deals: list[str] = []
    times: list[float] = []
    self_killed = 0
    with fleet(syncd) as running:

        def replacement() -> None:
            hooks = ["--crash-at", f"after_inflight_commit:{rng.randint(1, 3)}"] if rng.random() < 0.5 else []
            running.launch(*hooks)

        running.launch()
        running.launch()
        until(lambda: baseline_done(syncd), what="the baseline")
        while len(times) < kills:
            deals += new_won_deals(syncd, per_round)
            time.sleep(rng.uniform(0.0, 1.5))  # the kill lands while polling, creating or idle
            held = lease(syncd)
            assert held is not None
            pid, fence = held
            holder = next((p for p in running.alive() if p.pid == pid), None)
            if holder is None:
                self_killed += 1  # it died by itself (--crash-at) and a standby is taking over
            else:
                holder.kill()  # not reaped until the new lease: a zombie looks alive, as a holder on another host
                killed_at = time.monotonic()
                until(lambda fence=fence: (lease(syncd) or (0, 0))[1] > fence, what="a new lease holder")
                times.append(time.monotonic() - killed_at)
            while len(running.alive()) < 2:
                replacement()
        for proc in running.alive():  # no more self-crashes: let two plain ones finish the work
            proc.kill()
        running.launch()
        running.launch()
        until(lambda: syncd.op_states() == {"created": len(deals)}, within=60, what="every op created")
    assert_exactly_once(syncd, deals)
    return times, self_killed


def report(times: list[float], self_killed: int) -> str:
    return (
        f"failover (kill -9 to the next lease) over {len(times)} kills by the test (and {self_killed} holders "
        f"killed by themselves after an in_flight commit): min {min(times):.2f}s, median "
        f"{statistics.median(times):.2f}s, max {max(times):.2f}s (lease_seconds {LEASE:g}, interval {INTERVAL:g}s)"
    )


def test_killing_the_holder_hands_over_to_the_standby_with_no_duplicate_and_nothing_lost(pg_syncd: Syncd) -> None:
    configure(pg_syncd)
    times, self_killed = failovers(pg_syncd, kills=3, seed_value=1)
    print(report(times, self_killed))


@pytest.mark.soak
@pytest.mark.parametrize("seed_value", [15])
def test_twenty_kills_of_the_holder_give_no_duplicate_and_nothing_lost(pg_syncd: Syncd, seed_value: int) -> None:
    configure(pg_syncd)
    times, self_killed = failovers(pg_syncd, kills=20, seed_value=seed_value)
    print(report(times, self_killed))


def frozen_past_the_lease(syncd: Syncd, *hooks: str) -> tuple[int, str]:
    """The holder freezes (SIGSTOP) right after its `in_flight` commit; the standby takes over and creates the
    project; then the frozen one thaws. Returns its exit code and its log."""
    configure(syncd)
    (deal,) = seed(syncd, 1)
    with fleet(syncd) as running:
        frozen = running.launch("--stop-at", "after_inflight_commit", *hooks)
        until(lambda: baseline_done(syncd), what="the baseline")
        standby = running.launch()
        win(syncd, deal)
        until(lambda: stopped(frozen.pid), what="the holder to freeze after its in_flight commit")
        until(lambda: (lease(syncd) or (0, 0))[0] == standby.pid, what="the standby to take the lease")
        until(lambda: syncd.op_states() == {"created": 1}, what="the new holder to create the project")
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.wait(timeout=30)
        code = frozen.returncode
    return code, (syncd.workdir / "run-0.log").read_text()


def test_a_holder_frozen_past_its_lease_sends_nothing_when_it_thaws(pg_syncd: Syncd) -> None:
    code, log = frozen_past_the_lease(pg_syncd)

    assert code == 75, log
    assert "lost its lease on account 'default'" in log and "Traceback" not in log
    assert pg_syncd.asana.create_requests == 1, log + (pg_syncd.workdir / "run-1.log").read_text()
    assert pg_syncd.asana.duplicates() == {}


def test_without_the_pre_post_lease_check_the_thawed_holder_duplicates(pg_syncd: Syncd) -> None:
    """The negative control: the lease check is what prevents the duplicate."""
    code, log = frozen_past_the_lease(pg_syncd, "--skip-lease-check")

    assert pg_syncd.asana.create_requests == 2, log
    assert len(pg_syncd.asana.duplicates()) == 1
    assert code == 75  # its next write, under a stale fence, failed: it recorded nothing


def test_a_standby_tells_systemd_it_stands_by_then_takes_over_by_itself(pg_syncd: Syncd, tmp_path: Path) -> None:
    configure(pg_syncd)
    (deal,) = seed(pg_syncd, 1)
    systemd = Systemd(str(tmp_path / "notify.sock"))
    try:
        with fleet(pg_syncd) as running:
            holder = running.launch()
            until(lambda: baseline_done(pg_syncd), what="the baseline")
            standby = running.launch(env=systemd.env())
            line = systemd.wait_for("STATUS=standby", containing="holds the lease on account 'default'")
            assert f":{holder.pid})" in line
            assert systemd.lines("READY=1") and systemd.lines("WATCHDOG=1")  # not stuck starting, not wedged
            holder.kill()
            until(lambda: (lease(pg_syncd) or (0, 0))[0] == standby.pid, what="the standby to take the lease")
            systemd.wait_for("STATUS=", containing="running")
            win(pg_syncd, deal)
            until(lambda: pg_syncd.op_states() == {"created": 1}, what="the new holder to create the project")
    finally:
        systemd.close()
    assert pg_syncd.asana.create_requests == 1
