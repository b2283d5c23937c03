"""`syncd demo`: the whole product in thirty seconds, against the fake HubSpot and the fake Asana.

It runs the real cycle (config file, .env, SQLite state, HTTP over 127.0.0.1) through callables the CLI hands
in, so the demo cannot drift from what `syncd once` does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from syncd.models import CycleReport
from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot

CONFIG = """\
# Written by 'syncd demo': the sandbox's fake HubSpot and fake Asana on 127.0.0.1.
[state]
path = "syncd.db"

[crm]
kind = "hubspot"
base_url = "{hubspot}"
token_env = "HUBSPOT_TOKEN"
overlap_seconds = 300
delay_seconds = 1

[asana]
base_url = "{asana}"
token_env = "ASANA_TOKEN"
workspace = "{workspace}"
team = "{team}"
settle_seconds = 1.5        # > read_timeout: how long a lost answer may still turn into a project

[http]
connect_timeout = 1
read_timeout = 1
retry_base_seconds = 0.05

[[flow]]
name = "onboarding"
when = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"
[flow.project]
name = "Onboarding: {{name}}"
notes = "Auto-created from CRM deal {{id}} ({{amount:,.0f}} USD)."
"""


def run_demo(
    echo: Callable[[str], None],
    cycle: Callable[[Path], CycleReport],
    status: Callable[[Path], str],
    keep: Path | None = None,
) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "syncd.db").unlink(missing_ok=True)
    hubspot, asana = FakeHubSpot().start(), FakeAsana().start()
    try:
        config = folder / "config.toml"
        config.write_text(
            CONFIG.format(hubspot=hubspot.url, asana=asana.url, workspace=asana.workspace, team=asana.team)
        )
        (folder / ".env").write_text(f"HUBSPOT_TOKEN={hubspot.token}\nASANA_TOKEN={asana.token}\n")

        def ago(seconds: float = 2.0) -> float:
            return hubspot.now() - seconds

        def run(title: str) -> CycleReport:
            echo(f"\n== {title}")
            report = cycle(config)
            echo("   " + report.summary().replace("\n", "\n   "))
            return report

        echo(f"Sandbox: fake HubSpot at {hubspot.url}, fake Asana at {asana.url}")
        echo(f"Config and state in {folder}")
        echo('Rule: stage == "closedwon" and amount > 10000 and tier == "Enterprise"')
        seed = [
            ("Acme", "contractsent", 50000, "Enterprise"),
            ("Globex", "contractsent", 5000, "Enterprise"),
            ("Initech", "contractsent", 80000, "Mid-Market"),
            ("Umbrella", "decisionmakerboughtin", 120000, "Enterprise"),
            ("Hooli", "closedwon", 90000, "Enterprise"),  # already won before syncd started watching
        ]
        ids = {
            name: hubspot.add_deal(dealname=name, dealstage=stage, amount=str(amount), tier=tier, updated_at=ago(60))
            for name, stage, amount, tier in seed
        }
        echo(f"Seeded {len(ids)} deals; Hooli is already closed-won.")
        run("Cycle 1: the first run records a baseline (Hooli was won before syncd watched: no project)")

        for name in ("Acme", "Globex", "Initech", "Umbrella"):
            hubspot.update_deal(ids[name], dealstage="closedwon", updated_at=ago())
        echo("\nSales moves Acme, Globex, Initech and Umbrella to closed-won. Only Acme and Umbrella qualify.")
        echo("Fault injected: Asana creates the first project but the connection drops before the answer.")
        asana.inject("drop_after_create", route="create")
        run("Cycle 2: one project created; the other's outcome is unknown (it exists, but syncd never saw a 201)")

        echo("\nWaiting 2 s for the settle delay, so a complete listing is trustworthy evidence...")
        time.sleep(2.0)
        run("Cycle 3: reconcile lists the team's projects, finds the marker, records the project: no second POST")

        hubspot.update_deal(ids["Acme"], dealstage="contractsent", updated_at=ago())
        run("Cycle 4: Acme is reopened (back to contract sent)")
        time.sleep(1.0)
        hubspot.update_deal(ids["Acme"], dealstage="closedwon", amount="55000", updated_at=ago())
        run("Cycle 5: Acme is won again; it already has its project, so nothing is created")

        echo("\n== Asana now holds:")
        for project in asana.projects:
            echo(f"   {project['gid']}  {project['name']}")
        duplicates = asana.duplicates()
        echo(
            f"   {len(asana.projects)} project(s) from {asana.create_requests} create request(s); "
            f"duplicates: {duplicates or 'none'}"
        )
        echo("\n== syncd status")
        echo(status(config))
        echo(f"\nTry it yourself: syncd --config {config} status")
    finally:
        hubspot.stop()
        asana.stop()
