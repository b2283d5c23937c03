"""`syncd once` stops on SIGINT and SIGTERM as `syncd run` does: the step in progress finishes, the summary is
printed, the exit code is 130 or 143, and the cycle is recorded as interrupted. Real processes, real signals."""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import Syncd, qualify


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_once_finishes_the_step_prints_the_summary_and_records_the_interrupt(
    syncd: Syncd, signum: signal.Signals, code: int
) -> None:
    syncd.config(http={"read_timeout": 5, "max_tries": 1}, asana={"settle_seconds": 6})
    qualify(syncd, 3)
    cycles = syncd.query("SELECT count(*) FROM cycles")[0][0]
    syncd.hubspot.inject("slow", delay=1.0)  # the next poll takes a second: the signal lands inside it
    process = syncd.start("once")
    deadline = time.time() + 20
    while syncd.query("SELECT count(*) FROM cycles")[0][0] == cycles:  # the cycle has started
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    time.sleep(0.2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, out + err
    assert "Traceback" not in err and "Aborted" not in err
    assert f"Interrupted by {signum.name}: the step in progress finished" in out
    assert f"interrupted by {signum.name} after the step in progress" in err  # the cycle's log line says so too
    assert "Polled 1 page(s): 3 deals seen" in out  # the page in flight was recorded, nothing after it
    [(interrupted, finished)] = syncd.query("SELECT interrupted, finished_at FROM cycles ORDER BY id DESC LIMIT 1")
    assert interrupted == signum.name and finished is not None
    assert syncd.asana.projects == []  # it stopped before creating
    status = syncd("status")
    assert f"(interrupted by {signum.name})" in status.stdout
    assert json.loads(syncd("status", "--json").stdout)["last_cycle"]["interrupted"] == signum.name
    syncd.ok("once")  # the next run goes on from there
    assert len(syncd.asana.projects) == 3
