"""`syncd run`: cycles on an APScheduler interval job until SIGTERM/SIGINT.

`max_instances=1` and `coalesce=True`: a cycle that overruns the interval is never overlapped by the next one,
and missed runs collapse into one. A stop signal sets `stopping`, which the engine checks between pages and
between ops, so the current HTTP call finishes (bounded by its timeout) and the state machine is left
consistent; then the scheduler shuts down and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from syncd.models import CycleReport

log = logging.getLogger("syncd.daemon")


def run_forever(cycle: Callable[[threading.Event], CycleReport], interval_seconds: float) -> None:
    stopping = threading.Event()
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(max_workers=1)}, timezone="UTC")

    def job() -> None:
        if stopping.is_set():
            return
        try:
            cycle(stopping)
        except Exception:
            log.exception("the cycle crashed; the next one will run on schedule")

    scheduler.add_job(
        job,
        "interval",
        seconds=interval_seconds,
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now().astimezone(),
        id="cycle",
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the current step, then stopping", signal.Signals(signum).name)
        stopping.set()
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("syncd running: a cycle every %gs", interval_seconds)
    scheduler.start()
    log.info("syncd stopped")
