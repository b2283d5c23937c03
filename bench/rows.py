"""The benchmarks of issue 7: each method builds (or reuses) a world, drives the real syncd and returns rows.

A row is a flat dict with the same keys for every benchmark (None where a figure does not apply), so the
table and `--json` show them alike. Worlds are reused where the issue asks for "the same sandbox": the
baseline world of the steady size is the one the idle, incremental and naive-poller rows continue from.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from world import Run, World

SEED_AGE_S = 7200  # seeded deals end two hours ago: well outside the 300 s overlap of any later cycle
DOCUMENTED = {"search_per_second": 5, "requests_per_10_seconds": 100, "requests_per_minute": 150}
POLLED = re.compile(r"Polled \d+ page\(s\): (\d+) deals seen, (\d+) changed, (\d+) newly qualifying")


def label(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def row(name: str, run: Run, deals: int | None = None, **extra: Any) -> dict[str, Any]:
    sqlite = run.sqlite or {}
    return {
        "benchmark": name,
        "deals": deals,
        "wall_s": round(run.wall_s, 3),
        "cpu_s": round(run.cpu_s, 3),
        "cpu_s_per_1k": round(run.cpu_s / deals * 1000, 4) if deals else None,
        "deals_per_cpu_s": round(deals / run.cpu_s) if deals and run.cpu_s else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "crm_requests": run.crm_requests,
        "asana_requests": run.asana_requests,
        "http_429": run.crm_429 + run.asana_429,
        "sqlite_s": round(sqlite["sqlite_s"], 3) if "sqlite_s" in sqlite else None,
        "commit_s": round(sqlite["commit_s"], 3) if "commit_s" in sqlite else None,
        "fakes_cpu_s": round(run.fakes_cpu_s, 3),
        **extra,
    }


def polled(run: Run) -> dict[str, int]:
    """What `syncd once` printed about the poll, to check that the run saw what the benchmark changed."""
    m = POLLED.search(run.stdout)
    seen, changed, queued = (int(g) for g in m.groups()) if m else (None, None, None)
    return {"seen": seen, "changed": changed, "queued": queued, "created": run.stdout.count("\nCreated: ")}


class Suite:
    def __init__(self, log: Callable[[str], None], root: Path | None = None, profile_dir: Path | None = None):
        self.log, self.root, self.profile_dir = log, root, profile_dir
        self.worlds: dict[int, tuple[World, Run]] = {}

    def close(self) -> None:
        for size in list(self.worlds):
            self.release(size)

    def release(self, size: int) -> None:
        world, _ = self.worlds.pop(size, (None, None))
        if world is not None:
            world.close()

    def _profile(self, name: str) -> Path | None:
        if self.profile_dir is None:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return self.profile_dir / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".txt")

    def world(self, size: int) -> tuple[World, Run]:
        """A world of `size` deals whose first syncd cycle (the baseline) has run; built once, then reused."""
        if size not in self.worlds:
            world = World(label(size), self.root)
            started = time.perf_counter()
            world.seed(size, end=world.hubspot.now() - SEED_AGE_S)
            self.log(f"seeded {size:,} deals into the fake HubSpot in {time.perf_counter() - started:.1f}s")
            run = world.syncd("once", profile=self._profile(f"baseline {label(size)}")).check()
            self.log(f"baseline {label(size)}: {run.wall_s:.1f}s wall, {run.crm_searches} searches")
            self.worlds[size] = (world, run)
        return self.worlds[size]

    # -- the rows ----------------------------------------------------------------------------------------
    def startup(self) -> dict[str, Any]:
        """`python -m syncd --version`: interpreter start-up plus importing every syncd module."""
        world = World("startup", self.root)
        try:
            runs = [world.measure([sys.executable, "-m", "syncd", "--version"]).check() for _ in range(3)]
        finally:
            world.close()
        best = min(runs, key=lambda r: r.cpu_s)
        return row("start-up (syncd --version)", best)

    def baseline(self, size: int) -> dict[str, Any]:
        _, run = self.world(size)
        return row(f"baseline {label(size)}", run, size, searches=run.crm_searches)

    def status(self, size: int) -> dict[str, Any]:
        world, _ = self.world(size)
        runs = sorted((world.syncd("status").check() for _ in range(5)), key=lambda r: r.wall_s)
        median = runs[len(runs) // 2]
        return row(f"status, {label(size)} db (median of 5)", median)

    def steady(self, size: int) -> list[dict[str, Any]]:
        """On the baseline world: an idle cycle, then 1 % of the deals changed (1 % of those newly qualify)
        and an incremental cycle; the naive poller runs the same cycles on the same fakes."""
        world, _ = self.world(size)
        idle = world.syncd("once", profile=self._profile(f"idle {label(size)}")).check()
        snapshot = world.dir / "naive-snapshot.json"
        naive_first = world.naive(snapshot).check()
        self.log(f"naive poller, first cycle (snapshot only): {naive_first.wall_s:.1f}s")
        naive_idle = world.naive(snapshot).check()
        changed = max(1, size // 100)
        qualifying = max(1, changed // 100)
        newest = world.change(changed, qualifying, span=max(1.0, changed / 5000))
        world.settle(newest)
        incremental = world.syncd("once", profile=self._profile(f"incremental {label(size)}")).check()
        naive_incremental = world.naive(snapshot).check()
        minimum = math.ceil(changed / 200)
        return [
            row(f"idle cycle, {label(size)} db", idle, 0),
            row(
                f"incremental, {label(changed)} of {label(size)} changed",
                incremental,
                changed,
                searches=incremental.crm_searches,
                search_minimum=minimum,
                qualifying=qualifying,
                **polled(incremental),
            ),
            row(f"naive poller, idle, {label(size)}", naive_idle, 0, cycle="idle"),
            row(
                f"naive poller, incremental, {label(size)}",
                naive_incremental,
                changed,
                cycle="incremental",
                created=naive_incremental.asana_creates,
            ),
        ]

    def check_before_create(self, team: int, projects: int = 10) -> dict[str, Any]:
        """What Asana being the truth costs: a team already holding `team` projects; one process start creates
        `projects` projects, so it lists the team once (check before create), then POSTs each."""
        world = World(f"check-{team}", self.root)
        try:
            for i in range(team):
                world.asana.add_project(name=f"Existing project {i}", notes="not syncd's")
            world.seed(projects * 10, end=world.hubspot.now() - SEED_AGE_S)
            world.syncd("once").check()
            newest = world.change(projects * 2, projects, span=1.0)
            world.settle(newest)
            before = len(world.asana.requests)
            run = world.syncd("once").check()
            sent = world.asana.requests[before:]
        finally:
            world.close()
        listing = sum(1 for r in sent if r.method == "GET" and r.path.endswith("/projects"))
        created = polled(run)["created"]
        return row(
            f"check before create, team of {label(team)}",
            run,
            projects,
            team_projects=team,
            listing_requests=listing,
            listing_minimum=math.ceil(team / 100) + 1,
            created=created,
            asana_per_project=round(run.asana_requests / created, 2) if created else None,
        )

    def rate_limited(self, changed: int, projects: int) -> dict[str, Any]:
        """Sandbox limits on (HubSpot search 5/s and 100 req/10 s, Asana 150/min) and syncd configured with the
        same documented values: `changed` deals modified, `projects` of them newly qualifying."""
        world = World("rate-limited", self.root)
        try:
            world.seed(math.ceil(changed * 7 / 6) + 7, end=world.hubspot.now() - SEED_AGE_S)
            world.syncd("once").check()
            newest = world.change(changed, projects, span=max(1.0, changed / 5000))
            world.settle(newest)
            world.hubspot.search_rate_per_second = DOCUMENTED["search_per_second"]
            world.hubspot.burst_per_10s = DOCUMENTED["requests_per_10_seconds"]
            world.asana.rate_per_minute = DOCUMENTED["requests_per_minute"]
            world.config(limits=DOCUMENTED)
            self.log(f"rate-limited run: {changed:,} changed deals, {projects} projects (takes a while)...")
            run = world.syncd("once", profile=self._profile("rate limited")).check()
            searches_at = [
                r.received_at for r in world.hubspot.requests[len(world.hubspot.requests) - run.crm_requests :]
            ]
            posts_at = [r.received_at for r in world.asana.requests[len(world.asana.requests) - run.asana_requests :]]
        finally:
            world.close()
        phases = {  # from the fakes' own request logs: when did each kind of call happen?
            "poll_s": round(searches_at[-1] - searches_at[0], 2) if searches_at else None,
            "execute_s": round(posts_at[-1] - posts_at[0], 2) if posts_at else None,
            "overlap_s": round(max(0.0, searches_at[-1] - posts_at[0]), 2) if searches_at and posts_at else None,
        }
        searches = math.ceil(changed / 200)
        minimum = max(searches / DOCUMENTED["search_per_second"], projects / (DOCUMENTED["requests_per_minute"] / 60))
        return row(
            f"rate-limited, {label(changed)} changed, {projects} projects",
            run,
            changed,
            searches=run.crm_searches,
            search_minimum=searches,
            projects=projects,
            theoretical_min_s=round(minimum, 2),
            vs_minimum=round(run.wall_s / minimum, 3),
            **phases,
            **polled(run),
        )
