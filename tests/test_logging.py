"""Logs for journald and for people: one line per event at the level of what happened, no timestamps and
syslog priorities under journald, JSON on request, everything on stderr, API calls only with -v, debug detail
with -vv, APScheduler quiet, and a progress line during long work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from syncd.hooks import Hooks

from conftest import Syncd, in_process

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) syncd")
JOURNAL_LINE = re.compile(r"^<(\d)>(DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
API_CALL = re.compile(r"(GET|POST) \S+ -> \d{3} in \d+ ms")


def add_deals(syncd: Syncd, n: int) -> None:
    for i in range(n):
        syncd.hubspot.add_deal(
            dealname=f"Deal {i}", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
        )


def test_run_under_journald_one_failed_and_one_good_cycle(syncd: Syncd, tmp_path: Path) -> None:
    add_deals(syncd, 3)
    syncd.config(schedule={"interval_seconds": 1})
    syncd.hubspot.inject("500", times=4, route="search")  # every try of the first cycle's first search: it fails
    journal = tmp_path / "journal.log"
    with journal.open("w") as stderr:
        st = os.fstat(stderr.fileno())
        env = syncd.env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        daemon = subprocess.Popen(syncd.command("run"), env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.time() + 20
            while "baseline recorded" not in journal.read_text() and time.time() < deadline:
                time.sleep(0.05)
            daemon.send_signal(signal.SIGTERM)
            out, _ = daemon.communicate(timeout=20)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
    lines = journal.read_text().splitlines()
    print("\n".join(lines))  # the journald-style log, for the closing note
    assert daemon.returncode == 0 and out == ""  # logs go to stderr only
    assert lines and all(JOURNAL_LINE.match(line) for line in lines), lines  # priority prefix, no timestamp
    [failed] = [line for line in lines if "cycle FAILED" in line]
    assert (
        failed.startswith("<3>ERROR syncd.engine: cycle FAILED: ")
        and "; cursor not set; error: polling hubspot" in failed
    )
    [good] = [line for line in lines if "baseline recorded" in line]
    assert good.startswith("<6>INFO syncd.engine: baseline recorded: 3 deals in 1 page(s); cursor 20")
    assert not [line for line in lines if API_CALL.search(line)]  # no API call without -v
    assert not [line for line in lines if "run_forever" in line or "apscheduler" in line.lower()]
    assert any(line.startswith("<6>INFO syncd.daemon: syncd stopped") for line in lines)


def test_without_journald_each_line_has_a_timestamp(syncd: Syncd) -> None:
    add_deals(syncd, 1)
    for env in ({}, {"JOURNAL_STREAM": "1:1"}):  # a JOURNAL_STREAM that is not our stderr is not the journal
        result = subprocess.run(
            syncd.command("-v", "once"), env=syncd.env(**env), capture_output=True, text=True, timeout=60, check=False
        )
        lines = result.stderr.splitlines()
        assert result.returncode == 0 and lines, result.stderr
        assert all(STAMP.match(line) for line in lines), lines


def test_verbosity_adds_api_calls_then_debug_detail(syncd: Syncd) -> None:
    add_deals(syncd, 3)
    syncd.config(crm={"page_size": 1})
    quiet, verbose, debug = syncd("once"), syncd("-v", "once"), syncd("-vv", "once")
    assert quiet.returncode == verbose.returncode == debug.returncode == 0
    assert quiet.stderr == ""
    assert API_CALL.search(verbose.stderr) and " DEBUG " not in verbose.stderr
    assert API_CALL.search(debug.stderr)
    # deals, not reads: keyset pages of 1 re-read the anchor deal, so page 2 may still be at 1 deal
    assert re.search(r" DEBUG syncd.progress: poll: page 2 read, [12] deals so far", debug.stderr), debug.stderr
    assert re.search(r" DEBUG syncd.progress: poll: page \d+ read, 3 deals so far", debug.stderr), debug.stderr
    assert "run_forever" not in debug.stderr and "apscheduler" not in debug.stderr


def test_json_lines_from_the_option_or_the_config(syncd: Syncd) -> None:
    add_deals(syncd, 1)
    result = subprocess.run(
        syncd.command("--log-format", "json", "-v", "once"),
        env=syncd.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records and all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert any(r["logger"] == "syncd.http" and r["level"] == "info" for r in records)

    with (syncd.workdir / "journal.log").open("w") as stderr:
        st = os.fstat(stderr.fileno())
        env = syncd.env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        command = syncd.command("--log-format", "json", "-v", "once")
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, check=True)
    for line in (syncd.workdir / "journal.log").read_text().splitlines():
        priority, record = re.fullmatch(r"<(\d)>(\{.*\})", line).groups()  # type: ignore[union-attr]
        assert "time" not in json.loads(record) and priority in "3467"

    syncd.config(log={"format": "json"})
    from_config = syncd("-v", "once")
    assert [json.loads(line)["level"] for line in from_config.stderr.splitlines()]
    overridden = syncd("-v", "--log-format", "text", "once")
    assert STAMP.match(overridden.stderr), overridden.stderr

    syncd.config(log={"format": "xml"})
    wrong = syncd("once")
    assert wrong.returncode == 78 and 'format = \'xml\' is not a log format. Use "text" or "json".' in wrong.stderr


def test_a_long_baseline_says_how_far_it_got(syncd: Syncd) -> None:
    add_deals(syncd, 6)
    syncd.config(crm={"page_size": 1})
    ticks = iter(range(0, 10_000, 4))  # syncd's clock moves 4 s each time it is read: a slow CRM

    def clock() -> float:
        return time.time() + next(ticks)

    argv = ["--config", str(syncd.config_path), "once"]
    result = in_process(argv, syncd.env(), Hooks(clock=clock))
    assert result.returncode == 0, result.stderr
    progress = re.findall(r"INFO syncd.progress: baseline: (\d+) deals, (\d+) pages, (\d+) s$", result.stderr, re.M)
    assert progress, result.stderr
    assert [int(s) for *_, s in progress] == sorted(int(s) for *_, s in progress)


def test_a_failed_once_logs_its_error_on_stderr(syncd: Syncd) -> None:
    add_deals(syncd, 1)
    syncd.hubspot.inject("500", times=4)
    result = subprocess.run(
        syncd.command("once"), env=syncd.env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "cycle FAILED" in line]
    assert STAMP.match(line) and " ERROR syncd.engine: cycle FAILED: " in line and "error: polling hubspot" in line
    assert "ERROR" not in result.stdout  # stdout is the command's summary, not the log


def test_on_a_terminal_progress_is_redrawn_in_place(syncd: Syncd) -> None:
    add_deals(syncd, 4)
    syncd.config(crm={"page_size": 1})
    syncd.hubspot.inject("slow", times=5, delay=0.5)  # a slow CRM: the baseline takes over a second
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(syncd.command("once"), env=syncd.env(), stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        out, _ = process.communicate(timeout=60)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert process.returncode == 0, seen
    text = seen.decode()
    assert re.search(r"\rbaseline: \d+ deals, \d+ pages, \d+ s\r\x1b\[K", text), text  # drawn, then cleared
    assert re.search(r"\r\x1b\[Kbaseline: \d+ deals, \d+ pages, \d+ s, done\r?\n", text), text
    assert b"baseline" not in out
