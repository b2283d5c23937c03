"""`syncd run --accounts DIR` (issue 15): workers share many accounts on one PostgreSQL database by leases.
Real processes, real PostgreSQL, the sandbox fakes: one fake HubSpot serves every account (each its own
`[crm] account`, so its own markers), one fake Asana."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_failover import LEASE, until

from conftest import FAST, Syncd, config_text, win

ACCOUNTS = [f"acct{i}" for i in range(6)]


def folder(syncd: Syncd) -> Path:
    accounts = syncd.workdir / "accounts"
    accounts.mkdir(exist_ok=True)
    for name in ACCOUNTS:
        text = config_text(
            syncd.hubspot,
            syncd.asana,
            state={"url": syncd.postgres, "lease_seconds": LEASE},
            crm={"account": name},
            schedule={"interval_seconds": 1.0},
            **FAST,
        )
        (accounts / f"{name}.toml").write_text(text)
    return accounts


def holders(syncd: Syncd) -> dict[str, int]:
    try:
        rows = syncd.query("SELECT account, holder FROM leases WHERE expires_at > now()")
    except Exception:
        return {}
    return {account: int(holder.rpartition(":")[2]) for account, holder in rows}


def counts(syncd: Syncd) -> list[int]:
    per: dict[int, int] = {}
    for pid in holders(syncd).values():
        per[pid] = per.get(pid, 0) + 1
    return sorted(per.values())


def test_two_workers_split_six_accounts_and_one_takes_all_when_the_other_is_killed(pg_syncd: Syncd) -> None:
    accounts = folder(pg_syncd)
    deals = [
        pg_syncd.hubspot.add_deal(
            dealname=f"Deal {i}",
            dealstage="contractsent",
            amount="50000",
            tier="Enterprise",
            updated_at=pg_syncd.ago(60),
        )
        for i in range(2)
    ]
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
    logs = [open(pg_syncd.workdir / f"worker-{i}.log", "w") for i in range(2)]  # noqa: SIM115
    procs = [subprocess.Popen(argv, env=pg_syncd.env(), stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        until(lambda: counts(pg_syncd) == [3, 3], within=60, what="a 3/3 split")
        until(
            lambda: len(pg_syncd.query("SELECT 1 FROM meta WHERE key = 'baseline_done'")) == 6,
            within=60,
            what="six baselines",
        )
        for deal in deals:
            win(pg_syncd, deal)
        victim = procs[0]
        victim.kill()
        until(lambda: counts(pg_syncd) == [6], within=60, what="the survivor to hold all six")
        assert set(holders(pg_syncd).values()) == {procs[1].pid}
        until(lambda: pg_syncd.op_states() == {"created": 12}, within=60, what="every op created")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for log in logs:
            log.close()
    assert pg_syncd.asana.duplicates() == {}
    for name in ACCOUNTS:
        for deal in deals:
            assert len(pg_syncd.asana.projects_with_marker(f"[syncd:hubspot:{name}:{deal}:onboarding]")) == 1
    assert len(pg_syncd.asana.projects) == 12


def test_an_empty_folder_is_refused(pg_syncd: Syncd) -> None:
    empty = pg_syncd.workdir / "empty"
    empty.mkdir()
    result = pg_syncd("run", "--accounts", str(empty))
    assert result.returncode == 78 and "no config file" in result.stderr
