"""`syncd run` under a stand-in for systemd: a datagram socket bound in the test, named by $NOTIFY_SOCKET, that
records what syncd tells it (READY, STATUS, WATCHDOG, RELOADING, STOPPING). The daemon runs as a real process
against the fake HubSpot and Asana; a wedged cycle is a real HTTP call that HubSpot answers late."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import notify

from conftest import Syncd, running_daemon, win

WATCHDOG_SECONDS = 1.0


class Systemd:
    """The receiving end of sd_notify: every datagram, split into its assignments, with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.closing.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self.lock:
                self.messages += [(time.monotonic(), line) for line in data.decode().split("\n")]

    def close(self) -> None:
        self.closing.set()
        self.thread.join()
        self.sock.close()

    def env(self, watchdog: float | None = WATCHDOG_SECONDS) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog:
            env["WATCHDOG_USEC"] = str(int(watchdog * 1_000_000))
        return env

    def lines(self, prefix: str = "", since: float = 0.0) -> list[str]:
        with self.lock:
            return [line for at, line in self.messages if line.startswith(prefix) and at >= since]

    def times(self, line: str) -> list[float]:
        with self.lock:
            return [at for at, got in self.messages if got == line]

    def wait_for(self, prefix: str, containing: str = "", timeout: float = 10.0, since: float = 0.0) -> str:
        """The latest line starting with `prefix` and containing `containing` received after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines(prefix, since) if containing in line]
            if found:
                return found[-1]
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} containing {containing!r} within {timeout}s; got {self.lines()}")


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    fake = Systemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


def stop(daemon: subprocess.Popen[str], timeout: float = 5.0) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr; SIGKILL if it does not stop in time (and fail)."""
    daemon.send_signal(signal.SIGTERM)
    try:
        _, err = daemon.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.communicate()
        raise AssertionError(f"syncd did not stop within {timeout}s of SIGTERM") from None
    return daemon.returncode, err


def test_run_reports_ready_status_watchdog_and_stops_cleanly(syncd: Syncd, systemd: Systemd) -> None:
    deal = syncd.hubspot.add_deal(
        dealname="Acme", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
    )
    syncd.config(schedule={"interval_seconds": 1})
    with running_daemon(syncd.start("run", **systemd.env())) as daemon:
        systemd.wait_for("READY=1")
        systemd.wait_for("STATUS=baseline recorded", "1 deals")
        win(syncd, deal)
        status = systemd.wait_for("STATUS=last cycle ok", "1 created")
        assert status.endswith("0 dead; next in 1s") or status.endswith("0 dead; next in 0s"), status
        assert len(systemd.times("WATCHDOG=1")) >= 2
        code, err = stop(daemon)
    assert code == 0, err
    assert "STOPPING=1" in systemd.lines()
    assert "syncd stopped" in err
    assert [p["name"] for p in syncd.asana.projects] == ["Onboarding: Acme"]


def test_a_wedged_cycle_stops_the_watchdog_pings_until_it_moves_again(syncd: Syncd, systemd: Systemd) -> None:
    wedge = 4.0
    syncd.config(
        schedule={"interval_seconds": 1},
        http={"read_timeout": wedge + 5, "max_tries": 1},
        asana={"settle_seconds": wedge + 6},
    )
    with running_daemon(syncd.start("run", **systemd.env())) as daemon:
        systemd.wait_for("STATUS=baseline recorded")
        healthy_until = time.monotonic() + 2 * WATCHDOG_SECONDS
        while time.monotonic() < healthy_until:
            time.sleep(0.05)
        searches = syncd.hubspot.search_requests
        syncd.hubspot.inject("slow", route="search", delay=wedge)  # the next search hangs: no progress
        while syncd.hubspot.search_requests == searches:
            time.sleep(0.01)
        wedging_at = time.monotonic()
        systemd.wait_for("STATUS=last cycle ok", timeout=wedge + 3, since=wedging_at)  # the slow answer came
        time.sleep(2 * WATCHDOG_SECONDS)
        code, err = stop(daemon)
    assert code == 0, err
    pings = systemd.times("WATCHDOG=1")
    gap, start, end = max((b - a, a, b) for a, b in itertools.pairwise(pings))
    # Stuck from the search onwards: pings go on for up to WatchdogSec, then stop until the answer comes.
    assert gap >= wedge - WATCHDOG_SECONDS - 0.6, f"pings went on while the cycle was stuck (longest gap {gap:.2f}s)"
    assert start < wedging_at + WATCHDOG_SECONDS and end > wedging_at + wedge - 1
    assert len([t for t in pings if t < start]) >= 3, "a healthy loop pings about every WatchdogSec/2"
    assert len([t for t in pings if t > end]) >= 2, "pings resume once the cycle moves again"
    assert "withholding the watchdog ping" in err
    assert "watchdog pings resume" in err


SCRIPTED_DAEMON = """
import logging, sys, threading, time
from syncd.daemon import run_forever
from syncd.errors import ConfigError
from syncd.models import CycleReport

mode = sys.argv[1]
running = threading.Lock()
reloads = []

def cycle(stopping):
    with running:
        if mode == "long-cycle":  # busy for 3 s, asking whether to stop the way the engine does between ops
            until = time.monotonic() + 3
            while time.monotonic() < until and not stopping.is_set():
                time.sleep(0.1)
        else:
            time.sleep(0.3)
    return CycleReport(deals_seen=len(reloads))

def reload():
    assert running.acquire(blocking=False), "reload ran during a cycle"
    running.release()
    reloads.append(1)
    if len(reloads) == 2:
        raise ConfigError("config.toml [crm]: 'kind' is wrong. Fix it.")

logging.basicConfig(level=logging.INFO)
run_forever(cycle, 0.5, reload=reload if mode == "with-reload" else None)
"""


def scripted_daemon(mode: str, systemd: Systemd, watchdog: float | None = None) -> subprocess.Popen[str]:
    """`run_forever` with a stand-in cycle and reload (see SCRIPTED_DAEMON), in its own process."""
    env = {**os.environ, **systemd.env(watchdog=watchdog), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPTED_DAEMON), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_long_cycle_that_keeps_asking_stopping_keeps_the_watchdog_fed(systemd: Systemd) -> None:
    with running_daemon(scripted_daemon("long-cycle", systemd, watchdog=WATCHDOG_SECONDS)) as daemon:
        systemd.wait_for("STATUS=last cycle ok", timeout=6)
        code, err = stop(daemon)
    assert code == 0, err
    pings = systemd.times("WATCHDOG=1")
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 5 and max(gaps) < 1.5 * WATCHDOG_SECONDS / 2 + 0.5, [round(g, 2) for g in gaps]
    assert "withholding" not in err


def test_sigterm_during_a_cycle_stops_at_its_next_check_and_exits_0(systemd: Systemd) -> None:
    with running_daemon(scripted_daemon("long-cycle", systemd)) as daemon:
        systemd.wait_for("READY=1")
        time.sleep(0.5)  # inside the first, 3-second cycle
        started = time.monotonic()
        code, err = stop(daemon, timeout=2)
    assert code == 0, err
    assert time.monotonic() - started < 1.5
    assert "STOPPING=1" in systemd.lines() and "syncd stopped" in err


def test_sighup_reloads_between_cycles_and_a_failed_reload_keeps_running(systemd: Systemd) -> None:
    with running_daemon(scripted_daemon("with-reload", systemd)) as daemon:
        systemd.wait_for("STATUS=last cycle ok")
        daemon.send_signal(signal.SIGHUP)
        systemd.wait_for("STATUS=config reloaded")
        daemon.send_signal(signal.SIGHUP)
        failed = systemd.wait_for("STATUS=reload failed")
        systemd.wait_for("STATUS=last cycle ok", "2 deals seen")  # still cycling after the failed reload
        code, err = stop(daemon)
    assert code == 0, err
    assert "still running the previous config: config.toml [crm]: 'kind' is wrong" in failed
    assert systemd.lines("RELOADING=1") == ["RELOADING=1"] * 2
    assert len(systemd.lines("MONOTONIC_USEC=")) == 2
    assert systemd.lines("READY=1") == ["READY=1"] * 3  # start, and the end of each reload
    assert "reload ran during a cycle" not in err


def test_sighup_without_reload_is_logged_not_fatal(systemd: Systemd) -> None:
    with running_daemon(scripted_daemon("without-reload", systemd)) as daemon:
        systemd.wait_for("READY=1")
        daemon.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert daemon.poll() is None, "SIGHUP killed the daemon"
        code, err = stop(daemon)
    assert code == 0, err
    assert "nothing to reload" in err
    assert systemd.lines("RELOADING=1") == []


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Systemd(f"@syncd-test-{uuid.uuid4().hex}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", fake.address)
        assert notify.status("two\nlines") and notify.ready()
        fake.wait_for("READY=1")
        assert fake.lines("STATUS=") == ["STATUS=two lines"]
    finally:
        fake.close()


def test_notify_is_a_no_op_without_systemd_and_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify.watchdog() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert notify.stopping() is False


def test_watchdog_timeout_is_for_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_timeout() is None
    monkeypatch.setenv("WATCHDOG_USEC", "90000000")
    assert notify.watchdog_timeout() == 90.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_timeout() == 90.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_timeout() is None


def test_a_sighup_to_a_flow_naming_a_field_the_crm_lacks_keeps_the_running_config(
    syncd: Syncd, systemd: Systemd
) -> None:
    """Issue 12: the CRM field checks run on SIGHUP too; a misspelled rule is not taken."""
    syncd.config(schedule={"interval_seconds": 1})
    with running_daemon(syncd.start("run", **systemd.env())) as daemon:
        systemd.wait_for("STATUS=baseline recorded")
        syncd.config(
            schedule={"interval_seconds": 1},
            flows=[{"name": "onboarding", "when": "stage == 'closedwon' and tierr == 'Enterprise'"}],
        )
        daemon.send_signal(signal.SIGHUP)
        failed = systemd.wait_for("STATUS=reload failed")
        systemd.wait_for("STATUS=last cycle ok", since=time.monotonic())  # still cycling on the old config
        code, err = stop(daemon)
    assert code == 0, err
    assert "'tierr' is not a HubSpot deal field (did you mean 'tier'?)" in failed + err
