"""A benchmark world: a fake HubSpot and a fake Asana in this process, a work folder with a config, and
measured runs of the real `syncd` (and of the naive poller) as subprocesses.

A measured run records what the operator would see (wall time from spawn to exit), what the process cost
(user + system CPU and peak RSS, from `os.wait4`'s rusage of exactly that child, taken by bench/spawn.py so
that this big process's memory does not leak into the child's figure), what it asked of the fakes (requests
counted by the fakes themselves, 429s they sent) and what the fakes cost (this process's CPU over the same
interval: the fakes' server threads are the only thing running here while the child works).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.sandbox.configfile import config_toml
from syncd.sandbox.kit import Sandbox

BENCH = Path(__file__).resolve().parent
SECRETS = {"HUBSPOT_TOKEN": "pat-na1-bench-hubspot-token", "ASANA_TOKEN": "2/bench-asana-token"}
STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin")
STAGES += ("contractsent", "closedlost", "closedwon")
TIERS = ("Enterprise", "Mid-Market", "SMB")
UNLIMITED = {"search_per_second": 10_000, "requests_per_10_seconds": 100_000, "requests_per_minute": 1_000_000}


@dataclass
class Run:
    """One measured subprocess."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    crm_requests: int
    crm_searches: int
    asana_requests: int
    asana_creates: int
    crm_429: int
    asana_429: int
    fakes_cpu_s: float
    sqlite: dict[str, float] = field(default_factory=dict)

    def check(self) -> Run:
        if self.exit_code != 0:
            raise RuntimeError(f"{' '.join(self.argv[-3:])} exited {self.exit_code}\n{self.stdout}\n{self.stderr}")
        return self


class World:
    """Fakes + a work folder + a syncd config. `close()` stops the fakes and removes the folder."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self._tmp = tempfile.TemporaryDirectory(prefix=f"syncd-bench-{name}-", dir=root)
        self.dir = Path(self._tmp.name)
        self.sandbox = Sandbox("hubspot", SECRETS).start()
        self.crm, self.asana = self.sandbox.crm, self.sandbox.asana
        self.hubspot = self.crm.fake
        self.hubspot.daily_limit = 10**9  # the daily quota is not what these benchmarks measure
        self.deals: list[str] = []
        self.config()

    def close(self) -> None:
        self.sandbox.stop()
        self._tmp.cleanup()

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    # -- config ------------------------------------------------------------------------------------------
    def config(self, *, limits: dict[str, float] | None = None, defaults: bool = False) -> None:
        """Write config.toml for the fakes; `limits` sets the three rate-limit keys (default: far above use).
        `defaults`: nothing but where the fakes are, so syncd runs on its shipped defaults (the latency rows)."""
        limits = {**UNLIMITED, **(limits or {})}
        fakes = self.sandbox.tables()
        if defaults:
            project = {"name": "Onboarding: {name}", "notes": "Auto-created from CRM deal {id}."}
            flow = {"name": "onboarding", "when": self.crm.rule, "project": project}
            self.config_path.write_text(config_toml({"state": {"path": "syncd.db"}, **fakes}, [flow]))
            return
        tables: dict[str, dict[str, Any]] = {
            "state": {"path": "syncd.db"},
            "crm": {
                **fakes["crm"],
                "overlap_seconds": 300,
                "delay_seconds": 0.5,
                "search_per_second": limits["search_per_second"],
                "requests_per_10_seconds": limits["requests_per_10_seconds"],
            },
            "asana": {**fakes["asana"], "requests_per_minute": limits["requests_per_minute"], "settle_seconds": 25},
            "http": {"connect_timeout": 5, "read_timeout": 20},
        }
        project = {"name": "Onboarding: {name}", "notes": "Auto-created from CRM deal {id}."}
        flow = {"name": "onboarding", "when": self.crm.rule, "project": project}
        self.config_path.write_text(config_toml(tables, [flow]))

    # -- the CRM's contents ------------------------------------------------------------------------------
    def seed(self, n: int, *, end: float, step: float = 0.01) -> None:
        """n deals with distinct modification times, `step` seconds apart, the newest at `end` (epoch s).
        One deal in seven is closed-won, a third of those Enterprise and most over 10,000: they qualify
        already, so the baseline must create no project for them."""
        start = end - (n - 1) * step
        add = self.crm.add
        first = len(self.deals)
        for i in range(first, first + n):
            self.deals.append(
                add(
                    f"Deal {i:06d} GmbH & Co. KG",
                    amount=5_000 + (i * 7919) % 95_000,
                    tier=TIERS[i % len(TIERS)],
                    at=start + (i - first) * step,
                    close_date="2025-06-30T00:00:00.000Z",
                    dealstage=STAGES[i % len(STAGES)],  # one of seven, not just open or won
                    pipeline="default",
                    hubspot_owner_id=str(100 + i % 40),
                )
            )

    def change(self, count: int, qualifying: int, *, span: float = 1.0) -> float:
        """Modify `count` deals that are not closed-won now, `qualifying` of them into closed-won Enterprise
        deals over 10,000 (each one op); stamped from HubSpot's now over `span` s. Returns the newest stamp."""
        open_deals = [d for i, d in enumerate(self.deals) if STAGES[i % len(STAGES)] != "closedwon"]
        if count > len(open_deals):
            raise ValueError(f"only {len(open_deals)} open deals to change, {count} asked")
        stride = len(open_deals) / count
        chosen = [open_deals[int(k * stride)] for k in range(count)]
        winners = {int(j * count / qualifying) for j in range(qualifying)}
        start = self.hubspot.now()
        newest = start
        for k, deal_id in enumerate(chosen):
            newest = start + span * k / count
            if k in winners:
                self.crm.win(deal_id, at=newest, amount=75000, tier="Enterprise")
            else:
                self.crm.edit(deal_id, at=newest, amount=1_000 + k)
        return newest

    def settle(self, newest: float, delay: float = 0.5) -> None:
        """Wait until HubSpot's clock minus syncd's delay has passed `newest`, so the next run sees it. The
        clock syncd reads is the `Date` header, whole seconds: hence the extra second."""
        wait = newest + delay + 1.05 - self.hubspot.now()
        if wait > 0:
            time.sleep(wait)

    # -- measured runs -----------------------------------------------------------------------------------
    def syncd(self, *args: str, profile: Path | None = None) -> Run:
        """`syncd --config <world> ARGS` through bench/probe.py (SQLite timing; pyinstrument if `profile`)."""
        stats = self.dir / "probe-stats.json"
        stats.unlink(missing_ok=True)
        argv = [sys.executable, str(BENCH / "probe.py"), "--stats", str(stats)]
        if profile is not None:
            argv += ["--profile", str(profile)]
        run = self.measure([*argv, "--", "--config", str(self.config_path), *args])
        if stats.exists():
            run.sqlite = json.loads(stats.read_text())
        return run

    def naive(self, snapshot: Path) -> Run:
        argv = [sys.executable, str(BENCH / "naive.py"), "--hubspot", self.hubspot.url, "--asana", self.asana.url]
        argv += ["--workspace", self.asana.workspace, "--team", self.asana.team, "--snapshot", str(snapshot)]
        return self.measure(argv)

    def daemon(self, *args: str) -> Running:
        """Start `syncd --config <world> ARGS` (e.g. `run`) through bench/probe.py; `stop()` ends and measures it."""
        stats = self.dir / "probe-stats.json"
        stats.unlink(missing_ok=True)
        argv = [sys.executable, str(BENCH / "probe.py"), "--stats", str(stats)]
        return self.start([*argv, "--", "--config", str(self.config_path), *args])

    def stop(self, running: Running) -> Run:
        """SIGTERM (as systemd stops the service), then the measured run."""
        running.process.send_signal(signal.SIGTERM)
        run = self.finish(running)
        stats = self.dir / "probe-stats.json"
        if stats.exists():
            run.sqlite = json.loads(stats.read_text())
        return run

    def measure(self, argv: list[str], timeout: float = 3600) -> Run:
        return self.finish(self.start(argv, timeout))

    def start(self, argv: list[str], timeout: float = 3600) -> Running:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "HUBSPOT", "ASANA"))}
        env.update(self.sandbox.env(), PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH.parent), env.get("PYTHONPATH")]))  # this syncd
        out, err = self.dir / "stdout.txt", self.dir / "stderr.txt"
        spec = {"argv": argv, "env": env, "cwd": str(self.dir), "stdout": str(out), "stderr": str(err)}
        counts = self._counts()
        mine = resource.getrusage(resource.RUSAGE_SELF)
        process = subprocess.Popen(
            [sys.executable, "-I", str(BENCH / "spawn.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps({**spec, "timeout": timeout}))
        process.stdin.close()
        process.stdin = None  # written and closed: communicate() only reads
        return Running(argv, process, counts, mine.ru_utime + mine.ru_stime)

    def finish(self, running: Running) -> Run:
        stdout, stderr = running.process.communicate()
        if running.process.returncode != 0:
            raise subprocess.CalledProcessError(running.process.returncode, running.argv, stdout, stderr)
        after = resource.getrusage(resource.RUSAGE_SELF)
        child = json.loads(stdout)
        delta = [b - a for a, b in zip(running.counts, self._counts(), strict=True)]
        return Run(
            argv=running.argv,
            exit_code=child["exit_code"],
            stdout=(self.dir / "stdout.txt").read_text(),
            stderr=(self.dir / "stderr.txt").read_text(),
            wall_s=child["wall_s"],
            cpu_s=child["cpu_s"],
            peak_rss_mb=child["peak_rss_kb"] / 1024,
            crm_requests=delta[0],
            crm_searches=delta[1],
            crm_429=delta[2],
            asana_requests=delta[3],
            asana_creates=delta[4],
            asana_429=delta[5],
            fakes_cpu_s=(after.ru_utime + after.ru_stime) - running.fakes_cpu_before,
        )

    def _counts(self) -> tuple[int, ...]:
        hs, asana = self.hubspot, self.asana
        with hs.lock, asana.lock:
            return (
                len(hs.requests),
                hs.search_requests,
                hs.rate_limited,
                len(asana.requests),
                asana.create_requests,
                asana.rate_limited,
            )


@dataclass
class Running:
    """A started measured subprocess (bench/spawn.py around the command)."""

    argv: list[str]
    process: subprocess.Popen[str]
    counts: tuple[int, ...]
    fakes_cpu_before: float
