"""The real `syncd` command with the reliability hooks armed, for tests about processes:

    python tests/hooked.py [--crash-at NAME[:N]] [--stop-at NAME] [--blind-retry] [--skip-lease-check]
                           [--clock-offset SECONDS] SYNCD-ARGS...

`--crash-at` sends the process SIGKILL the N-th time (default 1) it reaches step NAME (`syncd.hooks.STEPS`);
`--stop-at` sends it SIGSTOP the first time (the test sends SIGCONT: a holder frozen past its lease);
`--skip-lease-check` is the negative control that sends without checking the PostgreSQL lease first;
`--blind-retry` is the negative control that re-sends `unknown` ops without reconcile; `--clock-offset` runs
syncd's clock that far ahead (the test moved its fakes' clocks too). The product reads no such switch: only
this launcher arms them, through `syncd.cli.main(hooks)`.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable

from syncd.cli import main
from syncd.hooks import STEPS, Hooks


def crash_at(spec: str, signum: signal.Signals = signal.SIGKILL) -> Hooks:
    name, _, nth = spec.partition(":")
    if name not in STEPS:
        raise SystemExit(f"hooked.py: unknown step {name!r}; known: {', '.join(STEPS)}")
    remaining = [int(nth or 1)]

    def step(reached: str) -> None:
        if reached == name:
            remaining[0] -= 1
            if remaining[0] == 0 or (remaining[0] < 0 and signum == signal.SIGKILL):
                # to this thread, so that it stops here: sent to the process, another thread may take the
                # signal and this one run on for a few instructions (past the lease check, into the POST)
                signal.pthread_kill(threading.get_ident(), signum)
                time.sleep(0.1)

    return Hooks(step=step)


def ahead(offset: float) -> Callable[[], float]:
    return lambda: time.time() + offset


if __name__ == "__main__":
    args, hooks = sys.argv[1:], Hooks()
    while args and args[0] in ("--crash-at", "--stop-at", "--blind-retry", "--skip-lease-check", "--clock-offset"):
        if args[0] == "--crash-at":
            hooks, args = dataclasses.replace(hooks, step=crash_at(args[1]).step), args[2:]
        elif args[0] == "--stop-at":
            hooks, args = dataclasses.replace(hooks, step=crash_at(args[1], signal.SIGSTOP).step), args[2:]
        elif args[0] == "--skip-lease-check":
            hooks, args = dataclasses.replace(hooks, skip_lease_check=True), args[1:]
        elif args[0] == "--clock-offset":
            hooks, args = dataclasses.replace(hooks, clock=ahead(float(args[1]))), args[2:]
        else:
            hooks, args = dataclasses.replace(hooks, blind_retry=True), args[1:]
    sys.argv[1:] = args
    main(hooks)
