"""Run one command and report what exactly that process cost, as one JSON object on stdout.

    echo '{"argv": [...], "env": {...}, "cwd": "...", "stdout": FILE, "stderr": FILE, "timeout": 600}' |
        python bench/spawn.py
    -> {"exit_code": 0, "wall_s": ..., "cpu_s": ..., "peak_rss_kb": ...}

A SIGTERM to this process is passed on to the command (how the benchmark stops a `syncd run`).

Why a separate small process: on Linux a child's ru_maxrss includes the resident size its parent had at
fork (the kernel carries the pre-exec high-water mark over the exec). The benchmark process holds the fake
HubSpot, hundreds of MB at 300k deals, so every child it forked would report at least that. This process
is a few MB, so the command's own peak is what `os.wait4` reports here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time


def main() -> None:
    spec = json.loads(sys.stdin.read())
    with open(spec["stdout"], "w") as stdout, open(spec["stderr"], "w") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(spec["argv"], stdout=stdout, stderr=stderr, env=spec["env"], cwd=spec["cwd"])
        watchdog = threading.Timer(spec.get("timeout", 3600), child.kill)
        watchdog.start()
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())  # `syncd run` is stopped the way systemd does
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "exit_code": child.returncode,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
