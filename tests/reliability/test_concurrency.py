"""The daemon running plus ten `syncd once` started at once: every extra one exits 75 before it imports the HTTP
stack or the store (so it gives up at once, whatever the load), and no "database is locked" ever reaches a
user. No wall time is asserted: the import log (`python -X importtime`) shows what a process did before it
gave up."""

from __future__ import annotations

import time

import pytest

from conftest import Syncd, assert_exactly_once, qualify, running_daemon

HEAVY = {"requests", "sqlite_utils", "syncd.compose", "syncd.store", "apscheduler"}


@pytest.mark.sqlite_file
def test_ten_onces_while_the_daemon_runs_all_exit_75_quickly(syncd: Syncd) -> None:
    deals = qualify(syncd, 3)
    syncd.config(schedule={"interval_seconds": 1})
    with running_daemon(
        syncd.start("run"), until=lambda: syncd.op_states().get("created", 0) >= len(deals), within=15
    ) as daemon:
        started = time.time()
        extras = [syncd.start("once", PYTHONPROFILEIMPORTTIME="1") for _ in range(10)]
        results = [(p.wait(timeout=10), time.time() - started, p.communicate()) for p in extras]
        status = syncd("status", "--json")  # a reader while the daemon writes: never "locked"
        daemon.terminate()
        _, daemon_err = daemon.communicate(timeout=15)
    print(
        f"10 concurrent onces: exit codes {sorted({code for code, _, _ in results})}, "
        f"slowest {max(t for _, t, _ in results):.2f}s"
    )
    for code, _, (out, err) in results:
        assert code == 75, err
        imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
        assert "syncd.cli" in imported, "the import log is there"
        assert not imported & HEAVY, f"imported before giving up: {sorted(imported & HEAVY)}"
        assert "database is locked" not in out + err
        assert "Error:" in err
    assert status.returncode == 0 and "database is locked" not in status.stderr
    assert daemon.returncode == 0 and "database is locked" not in daemon_err
    assert_exactly_once(syncd, deals)
