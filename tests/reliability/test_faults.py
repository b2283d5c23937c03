"""Fault storms and outages: 30 % of CRM and Asana calls fail in every documented way, and a 10-minute Asana
outage; the result is still exactly one project per qualifying deal, and no request ever arrives before a
Retry-After the fake sent has elapsed."""

from __future__ import annotations

import dataclasses
import time

import pytest

from syncd import compose, config
from syncd.engine import Cycle
from syncd.models import CycleReport

from conftest import ASANA_TOKEN, FAST, HUBSPOT_TOKEN, Syncd, assert_exactly_once, qualify, settle_until_done

CRM_FAULTS = ["500", "502", "503", "504", "429", "drop", "slow"]
ASANA_FAULTS = [
    "500",
    "502",
    "503",
    "504",
    "429",
    "drop",
    "drop_after_create",
    "slow_after_create",
    "500_after_create",
    "504_after_create",
]


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fault_storm_on_both_sides_keeps_exactly_once(syncd: Syncd, seed: int) -> None:
    syncd.config(http={**FAST["http"], "max_tries": 6}, asana=FAST["asana"])
    deals = qualify(syncd, 12)
    for fake, kinds in ((syncd.hubspot, CRM_FAULTS), (syncd.asana, ASANA_FAULTS)):
        fake.reseed(seed)
        fake.fault_rate, fake.fault_kinds = 0.3, kinds
    syncd.hubspot.inject("slow", route="search", delay=0.8)  # past the client's read timeout: retried
    syncd.asana.inject("429", route="create", retry_after=None)  # 429 without Retry-After
    syncd.asana.inject("429", route="list", retry_after=1)
    for _ in range(8):
        syncd("once")
        time.sleep(0.3)
    syncd.hubspot.fault_rate = syncd.asana.fault_rate = 0.0
    settle_until_done(syncd, rounds=20)
    print(
        f"seed {seed}: HubSpot faults {syncd.hubspot.faults_injected}/{len(syncd.hubspot.requests)} requests, "
        f"Asana faults {syncd.asana.faults_injected}/{len(syncd.asana.requests)} requests, "
        f"{syncd.asana.create_requests} creates -> {len(syncd.asana.projects)} projects"
    )
    assert syncd.asana.early_requests == 0
    assert_exactly_once(syncd, deals)


def test_a_ten_minute_asana_outage_makes_a_backlog_not_dead_ops(syncd: Syncd, monkeypatch) -> None:
    """In-process with an injected clock: one cycle per simulated minute, Asana answering 503 to everything."""
    monkeypatch.setenv("HUBSPOT_TOKEN", HUBSPOT_TOKEN)
    monkeypatch.setenv("ASANA_TOKEN", ASANA_TOKEN)
    syncd.config(**FAST)
    deals = qualify(syncd, 6)
    cfg = config.load(syncd.config_path)
    now = [time.time()]
    with compose.runtime(cfg) as rt:
        rt = dataclasses.replace(rt, clock=lambda: now[0])
        store = rt.store

        def cycle() -> CycleReport:
            return Cycle(rt).run()

        syncd.asana.fault_rate, syncd.asana.fault_kinds = 1.0, ["503"]
        for _minute in range(10):
            cycle()
            now[0] += 60
        during = syncd.asana.create_requests
        states = syncd.op_states()
        assert states.get("dead", 0) == 0 and states.get("created", 0) == 0
        attempts = dict(store.conn.execute("SELECT op_key, attempts FROM ops").fetchall())
        print(
            f"outage: 10 cycles, {during} create requests, {len(syncd.asana.requests)} Asana requests, "
            f"states {states}, breaker {rt.breaker.state(now[0])}"
        )
        assert during <= 10, "the breaker keeps an outage from spending attempts on every op"
        assert max(attempts.values()) <= cfg.asana.max_attempts // 2
        syncd.asana.fault_rate = 0.0
        for _ in range(4):
            now[0] += 60
            cycle()
    assert_exactly_once(syncd, deals)
