"""`syncd run --accounts DIR` (issue 15): workers share many accounts on one PostgreSQL database by leases.
Real processes, real PostgreSQL, the sandbox fakes: one fake HubSpot serves every account (each its own
`[crm] account`, so its own markers), one fake Asana."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_failover import LEASE, until
from test_monitoring import free_port

from syncd.sandbox.hubspot import FakeHubSpot

from conftest import FAST, HUBSPOT_TOKEN, Syncd, config_text, prospects, win

ACCOUNTS = [f"acct{i}" for i in range(6)]


def folder(syncd: Syncd, metrics: dict[str, dict[str, str]] | None = None) -> Path:
    """One config per account of ACCOUNTS; `metrics`: the [metrics] table of the accounts it names."""
    accounts = syncd.workdir / "accounts"
    accounts.mkdir(exist_ok=True)
    for name in ACCOUNTS:
        extra = {"metrics": (metrics or {})[name]} if name in (metrics or {}) else {}
        text = config_text(
            syncd.hubspot,
            syncd.asana,
            state={"url": syncd.postgres, "lease_seconds": LEASE},
            crm={"account": name},
            schedule={"interval_seconds": 1.0},
            **FAST,
            **extra,
        )
        (accounts / f"{name}.toml").write_text(text)
    return accounts


@contextmanager
def one_worker(syncd: Syncd, accounts: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`syncd run --accounts DIR` logging to worker.log; stopped by SIGTERM (a clean stop) at the end."""
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
    with open(syncd.workdir / "worker.log", "w") as log:
        proc = subprocess.Popen(argv, env=syncd.env(**env), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def baselines(syncd: Syncd) -> int:
    try:
        return len(syncd.query("SELECT 1 FROM meta WHERE key = 'baseline_done'"))
    except Exception:  # the tables do not exist before the first worker created them
        return 0


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
    deals = prospects(pg_syncd, 2)
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
    logs = [open(pg_syncd.workdir / f"worker-{i}.log", "w") for i in range(2)]  # noqa: SIM115
    procs = [subprocess.Popen(argv, env=pg_syncd.env(), stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        until(lambda: counts(pg_syncd) == [3, 3], within=60, what="a 3/3 split")
        until(
            lambda: baselines(pg_syncd) == 6,
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


def overlapping_cycles(syncd: Syncd) -> list[tuple]:
    """Two cycles of one account by different processes at once: two holders at the same time."""
    return syncd.query(
        """SELECT a.account, a.pid, b.pid FROM cycles a JOIN cycles b ON a.account = b.account AND a.pid <> b.pid
           AND a.started_at < coalesce(b.finished_at, 1e12) AND b.started_at < coalesce(a.finished_at, 1e12)
           AND a.finished_at IS NOT NULL AND b.finished_at IS NOT NULL"""
    )


def test_a_third_worker_takes_its_share_back_by_clean_hand_backs(pg_syncd: Syncd) -> None:
    accounts = folder(pg_syncd)
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
    logs = [open(pg_syncd.workdir / f"worker-{i}.log", "w") for i in range(3)]  # noqa: SIM115
    procs = [subprocess.Popen(argv, env=pg_syncd.env(), stdout=log, stderr=subprocess.STDOUT) for log in logs[:2]]
    samples: list[dict[str, int]] = []
    try:
        until(lambda: counts(pg_syncd) == [3, 3], within=60, what="a 3/3 split")
        procs.append(subprocess.Popen(argv, env=pg_syncd.env(), stdout=logs[2], stderr=subprocess.STDOUT))

        def balanced() -> bool:
            samples.append(holders(pg_syncd))
            return counts(pg_syncd) == [2, 2, 2]

        until(balanced, within=60, what="a 2/2/2 split")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        for log in logs:
            log.close()
    text = "".join((pg_syncd.workdir / f"worker-{i}.log").read_text() for i in range(3))
    assert "handing back 1 account(s)" in text and "handed back account" in text
    assert "took over the lease" not in text and "lost the lease" not in text, text  # only clean hand-backs
    assert all(len(sample) <= 6 for sample in samples)
    assert overlapping_cycles(pg_syncd) == []
    assert all(p.returncode == 0 for p in procs), text


def test_a_failing_account_does_not_stop_another_accounts_projects(pg_syncd: Syncd) -> None:
    broken = FakeHubSpot(token=HUBSPOT_TOKEN)
    broken.start()
    try:
        accounts = folder(pg_syncd)
        text = config_text(
            broken,
            pg_syncd.asana,
            state={"url": pg_syncd.postgres, "lease_seconds": LEASE},
            crm={"account": "broken"},
            schedule={"interval_seconds": 1.0},
            **FAST,
        )
        (accounts / "broken.toml").write_text(text)
        broken.inject("500", times=100_000)
        (deal,) = [
            pg_syncd.hubspot.add_deal(
                dealname="Deal",
                dealstage="contractsent",
                amount="50000",
                tier="Enterprise",
                updated_at=pg_syncd.ago(60),
            )
        ]
        argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
        with open(pg_syncd.workdir / "worker.log", "w") as log:
            proc = subprocess.Popen(argv, env=pg_syncd.env(), stdout=log, stderr=subprocess.STDOUT)
            try:
                until(
                    lambda: baselines(pg_syncd) == 6,
                    within=60,
                    what="six baselines",
                )
                win(pg_syncd, deal)
                until(lambda: pg_syncd.op_states() == {"created": 6}, within=60, what="six projects")
            finally:
                proc.kill()
                proc.wait()
        assert holders(pg_syncd).get("broken") is not None  # held, failing, and nobody else waited for it
        assert not pg_syncd.query("SELECT 1 FROM cycles WHERE account = 'broken' AND ok = 1")
    finally:
        broken.stop()


def test_status_shows_one_line_per_account_and_no_live_holder_is_unhealthy(pg_syncd: Syncd) -> None:
    accounts = folder(pg_syncd)
    with one_worker(pg_syncd, accounts) as proc:
        until(lambda: baselines(pg_syncd) == 6, within=60, what="six baselines")
        running = pg_syncd("status", "--accounts", str(accounts))
    stopped = pg_syncd("status", "--accounts", str(accounts))

    lines = running.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ACCOUNTS
    assert all(f":{proc.pid} fence 1" in line for line in lines), running.stdout
    assert stopped.returncode == 1 and stopped.stdout.count("no live holder") == 6, stopped.stdout


def test_files_whose_metrics_differ_are_refused_with_both_names(pg_syncd: Syncd) -> None:
    accounts = folder(pg_syncd, {"acct1": {"listen": "127.0.0.1:9464"}, "acct4": {"listen": "127.0.0.1:9465"}})
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(accounts)]
    result = subprocess.run(argv, env=pg_syncd.env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78, result.stderr
    assert "acct4.toml [metrics]" in result.stderr and "acct1.toml has listen = '127.0.0.1:9464'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_serves_every_accounts_metrics_behind_the_files_token(pg_syncd: Syncd) -> None:
    port, token = free_port(), "metrics-canary-token-4242"
    endpoint = {"listen": f"127.0.0.1:{port}", "token_env": "SYNCD_METRICS_TOKEN"}
    accounts = folder(pg_syncd, dict.fromkeys(ACCOUNTS, endpoint))

    def scrape(bearer: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    with one_worker(pg_syncd, accounts, SYNCD_METRICS_TOKEN=token):
        until(lambda: baselines(pg_syncd) == 6, within=60, what="six baselines")
        until(lambda: scrape(token)[0] == 200, within=30, what="the metrics endpoint")
        anonymous, (status, text) = scrape(None)[0], scrape(token)
    assert anonymous == 401 and status == 200
    assert all(f'syncd_leader{{account="{name}"}} 1.0' in text for name in ACCOUNTS), text
    assert "syncd_takeovers_total 0.0" in text and "syncd_fenced_writes_total 0.0" in text
    assert token not in (pg_syncd.workdir / "worker.log").read_text()


def fences(syncd: Syncd) -> dict[str, tuple[int, bool]]:
    """Each account's fence, and whether its lease is live."""
    rows = syncd.query("SELECT account, fence, expires_at > now() FROM leases")
    return {account: (int(fence), bool(live)) for account, fence, live in rows}


def test_sighup_serves_the_folder_as_it_is_now_and_keeps_it_when_it_is_broken(pg_syncd: Syncd) -> None:
    accounts = folder(pg_syncd)
    with one_worker(pg_syncd, accounts) as proc:
        until(lambda: baselines(pg_syncd) == 6, within=60, what="six baselines")
        (accounts / "acct5.toml").unlink()
        changed = (accounts / "acct2.toml").read_text().replace("interval_seconds = 1.0", "interval_seconds = 2.0")
        (accounts / "acct2.toml").write_text(changed)
        added = (accounts / "acct0.toml").read_text().replace('account = "acct0"', 'account = "acct6"')
        (accounts / "acct6.toml").write_text(added)
        proc.send_signal(signal.SIGHUP)
        until(lambda: baselines(pg_syncd) == 7, within=60, what="the new account's baseline")
        until(lambda: fences(pg_syncd).get("acct2") == (2, True), within=30, what="acct2 taken again")
        after_reload = fences(pg_syncd)
        (accounts / "acct1.toml").write_text("[crm\nbroken")
        proc.send_signal(signal.SIGHUP)
        until(lambda: "the running accounts are kept" in (pg_syncd.workdir / "worker.log").read_text(), 30)
        after_broken = fences(pg_syncd)
        alive = proc.poll() is None
    text = (pg_syncd.workdir / "worker.log").read_text()
    assert after_reload["acct5"] == (1, False), text  # handed back, and nobody serves it any more
    assert after_reload["acct6"] == (1, True)
    assert {a: after_reload[a] for a in ("acct0", "acct1", "acct3", "acct4")} == dict.fromkeys(
        ("acct0", "acct1", "acct3", "acct4"), (1, True)
    )
    assert alive and after_broken == after_reload
    assert "acct1.toml" in text and "Traceback" not in text
