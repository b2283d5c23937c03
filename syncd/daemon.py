"""`syncd run`: cycles on an APScheduler interval job until SIGTERM/SIGINT, reported to systemd (notify.py).

Scheduling: `max_instances=1` and `coalesce=True`, so a cycle that overruns the interval is never overlapped
by the next one, and missed runs collapse into one. When an op falls due before the next tick (an ambiguous
create's settle ends, a short `Retry-After` passes), the same job runs another cycle then (`early`), so a
failed create is retried in seconds rather than an interval later.

What systemd hears (`Type=notify`):

- `READY=1` once the scheduler is running. The CLI has already checked the config, taken the lock and applied
  the migrations before it calls `run_forever`.
- `STATUS=` one line after every cycle, e.g. "last cycle ok 12:03:04Z: 40 deals seen, 3 created, 0 dead;
  next in 60s".
- `WATCHDOG=1` only while the work loop makes progress. A free-running timer would go on pinging while a
  cycle hangs, which defeats the watchdog. Progress is the start of the daemon, the start and the end of a
  cycle, and every time the running cycle asks `stopping` whether to stop (the engine asks between pages
  and between ops). With W = WatchdogSec and I = the interval, the loop is healthy when
    - a cycle is running and its last progress is less than W old, or
    - no cycle is running and the last one ended less than I + W ago (the next one is due after I).
  A healthy loop pings at the end of each cycle and from a `watchdog` job every W/2 on its own thread, so a
  busy cycle thread cannot starve it. A step stuck for more than W stops the pings, and systemd kills syncd
  between 1.5 W and 2 W after the last progress; the restart is safe because the state machine is
  crash-safe. So 1.5 x WatchdogSec must exceed the longest single step: an HTTP call with its retries and
  any rate-limit wait inside it.
- `STOPPING=1` on SIGTERM/SIGINT. `stopping` is set, the engine returns at its next check (the current HTTP
  call finishes or times out), the scheduler shuts down waiting for the cycle, and the process exits 0.
- SIGHUP: `RELOADING=1`, then `reload()` runs on the cycle thread, so between cycles and never during one;
  then `READY=1` and a `STATUS=` line saying whether it worked. A `reload` that raises changes nothing: the
  error is logged and the daemon goes on with what it had. Without `reload`, SIGHUP is logged and ignored.

Signal handlers do nothing themselves: `signal.set_wakeup_fd` writes the signal number into a pipe, and the
main thread, which only waits for signals, reads it and acts. No lock is ever taken inside a handler.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syncd import notify
from syncd.errors import SyncdError
from syncd.models import CycleReport

log = logging.getLogger("syncd.daemon")
EARLY_MARGIN = 0.05  # seconds after an op falls due (the store compares due times with <=)


class Liveness:
    """When the work loop last made progress, and whether that is recent enough for a watchdog ping."""

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.interval, self.timeout = interval, timeout
        self.progress_at, self.running = now, False
        self._lock = threading.Lock()

    def started(self, now: float) -> None:
        with self._lock:
            self.progress_at, self.running = now, True

    def progressed(self, now: float) -> None:
        with self._lock:
            self.progress_at = now

    def finished(self, now: float) -> None:
        with self._lock:
            self.progress_at, self.running = now, False

    def stalled_for(self, now: float) -> float | None:
        """Seconds without progress when that is too long (the rule in the module docstring), else None."""
        with self._lock:
            idle = now - self.progress_at
            allowed = self.timeout if self.running else self.interval + self.timeout
        return idle if idle >= allowed else None


class Stopping(threading.Event):
    """The flag handed to the cycle. The engine asks it between pages and between ops, so each question is
    also the cycle's sign of progress for the watchdog."""

    def __init__(self, on_ask: Callable[[], None]) -> None:
        super().__init__()
        self._on_ask = on_ask

    def is_set(self) -> bool:
        self._on_ask()
        return super().is_set()


def run_forever(
    cycle: Callable[[threading.Event], CycleReport],
    interval_seconds: float,
    *,
    reload: Callable[[], None] | None = None,
) -> None:
    clock = time.monotonic
    watchdog = notify.watchdog_timeout()
    liveness = Liveness(interval_seconds, watchdog or 0.0, clock())
    stopping = Stopping(lambda: liveness.progressed(clock()))
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1), "watchdog": ThreadPoolExecutor(max_workers=1)},
        timezone="UTC",
    )

    anchor = clock()  # the interval trigger fires at anchor + k x interval (a cycle that overruns skips ticks)

    def next_in() -> str:
        """Seconds to the next tick. Jobs must not call the scheduler: `shutdown(wait=True)` holds its locks
        while it waits for them."""
        return f"{interval_seconds - (clock() - anchor) % interval_seconds:.0f}s"

    def run_cycle() -> None:
        """One cycle, then another as soon as a waiting op falls due, when that is before the next tick."""
        while not stopping.is_set():
            wait = early(one_cycle(), interval_seconds - (clock() - anchor) % interval_seconds)
            if wait is None or stopping.wait(wait):
                return

    def one_cycle() -> CycleReport | None:
        liveness.started(clock())
        report: CycleReport | None = None
        crash: Exception | None = None
        try:
            report = cycle(stopping)
        except Exception as exc:
            crash = exc
            log.exception("the cycle crashed; the next one will run on schedule")
        finally:
            liveness.finished(clock())
        if watchdog:
            notify.watchdog()
        notify.status(status_line(report, crash, datetime.now(UTC), next_in()))
        return report

    withholding = False  # so each stall is logged once

    def ping() -> None:
        nonlocal withholding
        idle = liveness.stalled_for(clock())
        if idle is None:
            if withholding:
                log.warning("the work loop made progress again; watchdog pings resume")
                withholding = False
            notify.watchdog()
        elif not withholding:
            withholding = True
            log.warning(
                "no progress for %.0fs (WatchdogSec=%gs): withholding the watchdog ping; systemd restarts syncd "
                "if this goes on",
                idle,
                watchdog,
            )

    def reload_config() -> None:
        assert reload is not None
        at = hms(datetime.now(UTC))
        try:
            reload()
        except SyncdError as exc:
            log.error("reload failed, still running the previous config: %s", exc)
            notify.status(f"reload failed {at}, still running the previous config: {exc}")
        except Exception as exc:
            log.exception("reload crashed, still running the previous config")
            notify.status(
                f"reload crashed {at} ({type(exc).__name__}; see the journal), still running the previous config"
            )
        else:
            log.info("config reloaded")
            notify.status(f"config reloaded {at}; next cycle in {next_in()}")
        finally:
            notify.ready()

    scheduler.add_job(
        run_cycle,
        "interval",
        seconds=interval_seconds,
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        id="cycle",
        name="syncd cycle",  # what APScheduler's own warnings call it, instead of run_forever.<locals>.run_cycle
    )
    if watchdog:
        scheduler.add_job(
            ping,
            "interval",
            seconds=watchdog / 2,
            max_instances=1,
            coalesce=True,
            executor="watchdog",
            id="watchdog",
            name="watchdog ping",
        )

    with signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as next_signal:
        notify.status(f"running: first cycle now, then one every {interval_seconds:g}s")
        scheduler.start()
        notify.ready()
        log.info(
            "syncd running: a cycle every %gs%s",
            interval_seconds,
            f", watchdog pings every {watchdog / 2:g}s while cycles make progress" if watchdog else "",
        )
        while (signum := next_signal()) == signal.SIGHUP:
            if reload is None:
                log.info("received SIGHUP: nothing to reload; restart syncd to apply config changes")
                continue
            log.info("received SIGHUP: reloading the config after the current cycle")
            notify.reloading()
            scheduler.add_job(reload_config, executor="default", id="reload", replace_existing=True)
        log.info("received %s: finishing the current step, then stopping", signal.Signals(signum).name)
        notify.stopping()
        notify.status("stopping: finishing the current step")
        stopping.set()
        scheduler.shutdown(wait=True)
    log.info("syncd stopped")


def early(report: CycleReport | None, to_tick: float) -> float | None:
    """Seconds until a follow-up cycle for the soonest waiting op (a settle ending, a short Retry-After), or None
    when the next tick comes first. An op that was already due when the cycle ended (the breaker or a pause held
    it) waits for the tick: following up at once would poll the CRM in a loop."""
    due_in = report.next_due_in if report is not None else None
    if due_in is None or due_in <= 0:
        return None
    wait = due_in + EARLY_MARGIN
    return wait if wait < to_tick - EARLY_MARGIN else None


def status_line(report: CycleReport | None, crash: Exception | None, at: datetime, next_in: str) -> str:
    """The `STATUS=` line after a cycle: what `systemctl status syncd` shows."""
    if report is None:
        name = type(crash).__name__ if crash else "no report"
        return f"last cycle crashed {hms(at)} ({name}; see the journal); next in {next_in}"
    if report.baseline and not report.errors:
        return f"baseline recorded {hms(at)}: {report.deals_seen} deals; next in {next_in}"
    outcome = "ok" if report.ok else "FAILED" if report.errors else "ok, dead ops need a human"
    line = (
        f"last cycle {outcome} {hms(at)}: {report.deals_seen} deals seen, {len(report.created)} created, "
        f"{len(report.dead)} dead"
    )
    if report.errors:
        more = f" (+{len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        line += f"; error: {report.errors[0][:160]}{more}"
    return f"{line}; next in {next_in}"


def hms(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%SZ")


@contextmanager
def signals(*signums: signal.Signals) -> Iterator[Callable[[], int]]:
    """Route `signums` to a pipe; yield a function that blocks until one arrives and returns its number.
    Must run in the main thread (Python delivers signals there). Restores the previous handlers on exit."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def ignore(signum: int, frame: FrameType | None) -> None:
        """The wakeup fd has the news; the main thread acts on it."""

    previous = {signum: signal.signal(signum, ignore) for signum in signums}

    def next_signal() -> int:
        while True:
            for number in os.read(read_fd, 1):
                if number in signums:
                    return number

    try:
        yield next_signal
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(read_fd)
        os.close(write_fd)
