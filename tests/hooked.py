"""The real `syncd` command with the reliability hooks armed, for tests about processes:

    python tests/hooked.py [--crash-at NAME[:N]] [--blind-retry] SYNCD-ARGS...

`--crash-at` sends the process SIGKILL the N-th time (default 1) it reaches step NAME (`syncd.hooks.STEPS`);
`--blind-retry` is the negative control that re-sends `unknown` ops without reconcile. The product reads no
such switch: only this launcher arms them, through `syncd.cli.main(hooks)`.
"""

from __future__ import annotations

import os
import signal
import sys

from syncd.cli import main
from syncd.hooks import STEPS, Hooks


def crash_at(spec: str) -> Hooks:
    name, _, nth = spec.partition(":")
    if name not in STEPS:
        raise SystemExit(f"hooked.py: unknown step {name!r}; known: {', '.join(STEPS)}")
    remaining = [int(nth or 1)]

    def step(reached: str) -> None:
        if reached == name:
            remaining[0] -= 1
            if remaining[0] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return Hooks(step=step)


if __name__ == "__main__":
    args, hooks = sys.argv[1:], Hooks()
    while args and args[0] in ("--crash-at", "--blind-retry"):
        if args[0] == "--crash-at":
            hooks, args = crash_at(args[1]), args[2:]
        else:
            hooks, args = Hooks(step=hooks.step, blind_retry=True), args[1:]
    sys.argv[1:] = args
    main(hooks)
