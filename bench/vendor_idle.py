"""What an idle cycle of `syncd run` asks of each CRM: requests per cycle, and Pipedrive's API tokens.

An idle cycle (nothing changed) should cost one request on every CRM: HubSpot one search, Salesforce one query
(its access token lasts, and the refresh token is kept), Pipedrive one deals page, whose token cost (10 in the
fake, from Pipedrive's published costs) is the whole day's idle spend per cycle. Things read once per process
(Pipedrive's dealFields, HubSpot's portal zone, a Salesforce login) must not recur per cycle. A real
`syncd run` runs against the kit's fakes with a one-second interval; the figure is the mean over cycles 3 to 6
(after the baseline and the first incremental cycle).

    python bench/vendor_idle.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from syncd.sandbox.configfile import config_toml
from syncd.sandbox.kit import Sandbox

SECRETS = {
    "HUBSPOT_TOKEN": "bench-hubspot-token-1",
    "PIPEDRIVE_TOKEN": "bench-pipedrive-token-1",
    "SALESFORCE_CLIENT_ID": "bench-client-id-1",
    "SALESFORCE_CLIENT_SECRET": "bench-client-secret-1",
    "SALESFORCE_REFRESH_TOKEN": "bench-refresh-token-1",
    "ASANA_TOKEN": "bench-asana-token-1",
}
CYCLES = (3, 6)
POLL = {  # the request each cycle polls with
    "hubspot": lambda r: r.method == "POST" and r.path.endswith("/deals/search"),
    "salesforce": lambda r: r.method == "GET" and "/query" in r.path,
    "pipedrive": lambda r: r.method == "GET" and r.path.rstrip("/") == "/api/v2/deals",
}


def idle(kind: str) -> dict[str, float]:
    """Requests (and, for Pipedrive, tokens) per idle cycle of one `syncd run` against `kind`'s fake."""
    with tempfile.TemporaryDirectory(prefix=f"syncd-idle-{kind}-") as folder, Sandbox(kind, SECRETS) as box:
        fake = box.crm.fake
        for i in range(20):
            box.crm.add(f"Deal {i}", at=box.crm.ago(30))
        tables = box.tables()
        tables["state"] = {"path": "syncd.db"}
        tables["crm"] |= {"overlap_seconds": 5, "delay_seconds": 0}
        tables["schedule"] = {"interval_seconds": 1}
        path = Path(folder) / "config.toml"
        path.write_text(config_toml(tables, [{"name": "onboarding", "when": box.crm.rule}]))
        env = {**os.environ, **box.env()}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(path), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        marks: list[tuple[int, int]] = []  # (requests so far, tokens so far) when each poll arrived
        polls = 0
        deadline = time.time() + 60
        try:
            while len(marks) <= CYCLES[1] and time.time() < deadline:
                seen = [r for r in list(fake.requests) if POLL[kind](r)]
                if len(seen) > polls:
                    polls = len(seen)
                    marks.append((len(fake.requests) - 1, getattr(fake, "budget_used", 0)))
                time.sleep(0.005)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        if len(marks) <= CYCLES[1]:
            raise RuntimeError(f"{kind}: only {len(marks)} cycles in 60 s")
        first, last = marks[CYCLES[0]], marks[CYCLES[1]]
        cycles = CYCLES[1] - CYCLES[0]
        return {"requests": (last[0] - first[0]) / cycles, "tokens": (last[1] - first[1]) / cycles}


def main() -> None:
    print("idle cycle of `syncd run`, per CRM (mean of cycles 3-6):")
    for kind in ("hubspot", "salesforce", "pipedrive"):
        figures = idle(kind)
        tokens = f", {figures['tokens']:g} API tokens" if kind == "pipedrive" else ""
        print(f"  {kind:<10} {figures['requests']:g} request(s) per idle cycle{tokens}")


if __name__ == "__main__":
    main()
