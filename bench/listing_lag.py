"""Measure how long Asana's team project listing takes to show a project it has just created: the figure
behind `[asana] listing_lag_seconds`, which an answered 5xx or a hung-up create settles for.

    ASANA_TOKEN=... python bench/listing_lag.py --config /etc/syncd/acme.toml --samples 5
    python bench/listing_lag.py --sandbox --list-lag 0.4     # the fake, with a modelled lag

Each sample creates one project carrying a throw-away marker in the configured team, through syncd's own
client (`syncd.sinks.asana`), lists the team (every page, archived too, as reconcile does) until the marker
shows, prints the delay, and deletes the project. It creates and deletes real projects: point it at a team
where that is fine. Prints one line per sample and the maximum; choose `listing_lag_seconds` above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's syncd

from syncd import config as configuration
from syncd.compose import wire
from syncd.sandbox.configfile import config_toml
from syncd.sandbox.kit import Sandbox
from syncd.sinks.asana import AsanaSink

SECRETS = {"HUBSPOT_TOKEN": "pat-na1-lag-probe", "ASANA_TOKEN": "2/lag-probe"}


def sample(sink: AsanaSink, timeout: float, delete: bool) -> float:
    marker = f"[syncd:probe:lag:{uuid.uuid4().hex[:12]}:listing]"
    project = sink.create_project({"name": "syncd listing-lag probe (safe to delete)", "notes": marker})
    started = time.monotonic()
    try:
        while marker not in sink.projects_by_marker():
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the listing did not show project {project.gid} within {timeout:g}s")
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        if delete:  # the fake has no DELETE route; its projects go with it
            sink.http.call("DELETE", f"/projects/{project.gid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="a syncd config: its [asana] team and token are used")
    where.add_argument("--sandbox", action="store_true", help="measure the fake Asana instead")
    parser.add_argument("--list-lag", type=float, default=0.0, help="--sandbox: the fake's modelled lag, seconds")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on one sample after this long")
    args = parser.parse_args()
    sandbox = None
    if args.sandbox:
        sandbox = Sandbox("hubspot", SECRETS).start()
        sandbox.asana.list_lag = args.list_lag
        path = Path(f"/tmp/syncd-listing-lag-{uuid.uuid4().hex[:8]}.toml")
        flow = {"name": "probe", "when": "stage == 'never'", "project": {"name": "{name}"}}
        path.write_text(config_toml({"state": {"path": "probe.db"}, **sandbox.tables()}, [flow]))
        os.environ.update(sandbox.env())
    else:
        path = args.config
    try:
        sink = wire(configuration.load(path)).sink
        lags = []
        for n in range(args.samples):
            lags.append(sample(sink, args.timeout, delete=sandbox is None))
            print(f"sample {n + 1}: the listing showed the new project after {lags[-1]:.2f}s", flush=True)
        print(f"max {max(lags):.2f}s over {len(lags)} samples")
    finally:
        if sandbox is not None:
            sandbox.stop()
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
