"""Many accounts on PostgreSQL (issue 15): for 100 and 1,000 accounts on 1, 2 and 4 `syncd run --accounts DIR`
workers (real processes, one fake HubSpot and one fake Asana in this process serving every account), prints the
time of the one renewal statement (median, p95, over each worker's real held leases), the accounts per worker
after balancing, and the CPU ms of the worker processes per idle account-cycle (nothing changed).

    SYNCD_TEST_POSTGRES_URL=postgresql://... python bench/fleet.py [--sizes 100,1000] [--workers 1,2,4] [--idle 8]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg

from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.configfile import config_toml
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.store.lease import renew_all
from syncd.store.pg_schema import connect

TOKENS = {"HUBSPOT_TOKEN": "pat-na1-bench-fleet", "ASANA_TOKEN": "2/bench-fleet"}
LEASE, INTERVAL = 6.0, 2.0


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def wait_for(condition, within: float, state) -> None:  # type: ignore[no-untyped-def]
    """Until `condition()`, or exit saying what `state()` was then."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/fleet.py: gave up waiting after {within:g}s: {state()}")
        time.sleep(0.2)


def one(base: str, accounts: int, workers: int, idle: float, hubspot: FakeHubSpot, asana: FakeAsana, work: Path) -> str:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    folder = work / schema
    folder.mkdir()
    for i in range(accounts):
        tables = {
            "state": {"url": url, "lease_seconds": LEASE},
            "crm": {"kind": "hubspot", "base_url": hubspot.url, "token_env": "HUBSPOT_TOKEN", "account": f"a{i:04d}",
                    "delay_seconds": 1, "search_per_second": 10000, "requests_per_10_seconds": 100000},
            "asana": {"base_url": asana.url, "token_env": "ASANA_TOKEN", "workspace": asana.workspace,
                      "team": asana.team, "requests_per_minute": 1000000},
            "schedule": {"interval_seconds": INTERVAL},
            "http": {"connect_timeout": 1, "read_timeout": 2},
        }  # fmt: skip
        flow = {"name": "onboarding", "when": "stage == 'closedwon'", "project": {"name": "Onboarding: {name}"}}
        (folder / f"a{i:04d}.toml").write_text(config_toml(tables, [flow]))
    env = {**os.environ, **TOKENS}
    argv = [sys.executable, "-m", "syncd", "run", "--accounts", str(folder)]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)
    ]
    conn = connect(url)
    try:
        share = math.ceil(accounts / workers)

        def per_worker() -> list[int]:
            try:
                rows = conn.execute("SELECT holder, count(*) FROM leases WHERE expires_at > now() GROUP BY holder")
                return sorted(int(r[1]) for r in rows)
            except psycopg.Error:
                return []

        def baselines() -> int:
            try:
                return int(conn.execute("SELECT count(*) FROM meta WHERE key = 'baseline_done'").fetchone()[0])  # type: ignore[index]
            except psycopg.Error:
                return 0

        def state() -> str:
            return f"leases per worker {per_worker()}, fair share {share}, {baselines()} baselines of {accounts}"

        wait_for(lambda: sum(per_worker()) == accounts and max(per_worker()) <= share, 150, state)
        wait_for(lambda: baselines() == accounts, 150, state)
        time.sleep(INTERVAL)
        counts = per_worker()
        cycles0 = int(conn.execute("SELECT count(*) FROM cycles WHERE finished_at IS NOT NULL").fetchone()[0])  # type: ignore[index]
        cpu0 = sum(cpu_ms(p.pid) for p in procs)
        time.sleep(idle)
        cpu1 = sum(cpu_ms(p.pid) for p in procs)
        cycles1 = int(conn.execute("SELECT count(*) FROM cycles WHERE finished_at IS NOT NULL").fetchone()[0])  # type: ignore[index]
        holder = conn.execute("SELECT holder FROM leases GROUP BY holder ORDER BY count(*) DESC LIMIT 1").fetchone()[0]  # type: ignore[index]
        fences = {
            str(r[0]): (int(r[1]), LEASE)
            for r in conn.execute("SELECT account, fence FROM leases WHERE holder = ?", (holder,))
        }
        times = []
        for _ in range(50):
            started = time.perf_counter()
            with conn.raw.transaction():
                renew_all(conn, fences)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1]
        per_cycle = (cpu1 - cpu0) / max(1, cycles1 - cycles0)
        return (
            f"| {accounts:>5} | {workers} | {statistics.median(times):6.2f} | {p95:6.2f} | {len(fences):>4} "
            f"| {'/'.join(map(str, counts)):>15} | {cycles1 - cycles0:>6} | {per_cycle:6.2f} |"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        conn.close()
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds of the idle window measured")
    args = parser.parse_args()
    base = os.environ.get("SYNCD_TEST_POSTGRES_URL") or sys.exit("set SYNCD_TEST_POSTGRES_URL")
    hubspot, asana = FakeHubSpot(token=TOKENS["HUBSPOT_TOKEN"]), FakeAsana(token=TOKENS["ASANA_TOKEN"])
    hubspot.daily_limit = 10**9  # one token serves every account here; the daily quota is not what this measures
    hubspot.start()
    asana.start()
    print(f"interval {INTERVAL:g}s, lease {LEASE:g}s, idle window {args.idle:g}s, nproc {os.cpu_count()}")
    print(
        "| accounts | workers | renew ms median | renew ms p95 | leases renewed | accounts per worker "
        "| idle cycles | CPU ms per account-cycle |"
    )
    print("|---|---|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as work:
            for size in map(int, args.sizes.split(",")):
                for workers in map(int, args.workers.split(",")):
                    print(one(base, size, workers, args.idle, hubspot, asana, Path(work)), flush=True)
                    print(f"  (fake HubSpot: {hubspot.daily_used} calls so far)", file=sys.stderr, flush=True)
    finally:
        hubspot.stop()
        asana.stop()


if __name__ == "__main__":
    main()
