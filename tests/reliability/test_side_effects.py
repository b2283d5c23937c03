"""Every follow-up side effect exactly once under fire: kill -9 between the project and its tasks, at each
effect step, lost task answers, and write-back failures; then reruns leave one task of each kind per project
and one write-back per deal."""

from __future__ import annotations

import random
import signal
import time

import pytest

from conftest import FAST, Syncd, integrity_ok, qualify, settle_until_done

RULE = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"
TASKS = [{"name": "Kickoff {name}"}, {"name": "Welcome pack {name}"}]


def configure(syncd: Syncd, **asana: object) -> None:
    syncd.config(
        http=FAST["http"],
        asana={**FAST["asana"], **asana},
        flows=[{"name": "onboarding", "when": RULE, "tasks": TASKS, "writeback": {"property": "asana_project_url"}}],
    )


def drain(syncd: Syncd) -> None:
    for _ in range(15):
        settle_until_done(syncd)
        if set(dict(syncd.query("SELECT state, count(*) FROM effects GROUP BY state"))) <= {"done"}:
            return
        syncd.tick(0.7)
    raise AssertionError(f"effects did not settle: {syncd.query('SELECT effect_key, state, last_error FROM effects')}")


def assert_every_side_effect_once(syncd: Syncd, deals: list[str]) -> None:
    assert syncd.asana.duplicates() == {}
    for deal in deals:
        (project,) = syncd.asana.projects_with_marker(f"[syncd:hubspot:default:{deal}:onboarding]")
        tasks = syncd.asana.tasks_with_marker(f"[syncd-task:onboarding:hubspot:default:{deal}/")
        assert sorted(t["name"].split()[0] for t in tasks) == ["Kickoff", "Welcome"], deal
        assert all(t["projects"][0]["gid"] == project["gid"] for t in tasks)
        assert syncd.hubspot.deals[deal]["properties"]["asana_project_url"] == project["permalink_url"]
    assert len(syncd.asana.projects) == len(deals)
    assert len(syncd.asana.tasks) == 2 * len(deals)


@pytest.mark.parametrize("point", ["after_created_commit", "after_effect_inflight_commit", "after_effect_post"])
@pytest.mark.parametrize("hit", [1, 2])
def test_a_crash_at_each_effect_step_keeps_every_side_effect_once(syncd: Syncd, point: str, hit: int) -> None:
    configure(syncd)
    deals = qualify(syncd, 2)
    crashed = syncd("once", crash_at=f"{point}:{hit}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    integrity_ok(syncd)
    syncd.tick(0.7)
    drain(syncd)
    assert_every_side_effect_once(syncd, deals)


def test_random_kill_9_with_tasks_and_writeback_under_faults(syncd: Syncd) -> None:
    rng = random.Random(7)
    configure(syncd, requests_per_minute=600)
    deals = qualify(syncd, 6)
    syncd.asana.reseed(7)
    syncd.asana.fault_rate = 0.25
    syncd.asana.fault_kinds = ["500", "503", "drop", "drop_after_create", "500_after_create", "429"]
    syncd.hubspot.inject("503", times=3, route="patch")  # the write-back fails first
    kills = 0
    for _ in range(15):
        process = syncd.start("once")
        time.sleep(rng.uniform(0.05, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=30)
        integrity_ok(syncd)
    syncd.asana.fault_rate = 0.0
    syncd.tick(0.7)
    drain(syncd)
    print(
        f"side effects: {kills} kills, {syncd.asana.faults_injected} Asana faults, "
        f"{syncd.asana.task_create_requests} task POSTs -> {len(syncd.asana.tasks)} tasks"
    )
    assert_every_side_effect_once(syncd, deals)
