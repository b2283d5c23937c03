"""`syncd demo [--crm hubspot|salesforce|pipedrive]`: the whole product in seconds, against a fake CRM and
the fake Asana.

It runs the real cycle (config file, .env, SQLite state, HTTP over 127.0.0.1) through callables the CLI hands
in, so the demo cannot drift from what `syncd once` does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.models import CycleReport
from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sandbox.pipedrive import FakePipedrive
from syncd.sandbox.salesforce import FakeSalesforce

CONFIG = """\
# Written by 'syncd demo': the sandbox's fake {title} and fake Asana on 127.0.0.1.
[state]
path = "syncd.db"

[crm]
kind = "{kind}"
base_url = "{crm_url}"
overlap_seconds = 300
delay_seconds = 1
{crm_extra}

[asana]
base_url = "{asana}"
token_env = "SYNCD_DEMO_ASANA_TOKEN"     # sandbox-only names: a real token in your shell is never used
workspace = "{workspace}"
team = "{team}"
settle_seconds = 2.5        # > read_timeout: how long a lost answer may still turn into a project

[http]
connect_timeout = 2
read_timeout = 2
retry_base_seconds = 0.05

[[flow]]
name = "onboarding"
when = "{rule}"
[flow.project]
name = "Onboarding: {{name}}"
template = "{template}"                 # the project starts from an Asana project template
[[flow.tasks]]
name = "Kickoff call with {{name}}"
notes = "Deal {{id}}, {{amount:,.0f}} USD"
due_days_after_close = 7
[[flow.tasks]]
name = "Send the welcome pack to {{name}}"
[flow.writeback]
property = "{writeback}"                # the project URL goes back onto the deal
"""


class DemoCrm:
    """How the demo speaks to each fake CRM: the same story in each vendor's words."""

    title: str
    kind: str
    rule: str
    crm_extra = ""
    won_stage: Any
    open_stage: Any
    writeback: str

    def __init__(self) -> None:
        self.fake: Any = None

    def env(self) -> str:
        raise NotImplementedError

    def add(self, name: str, stage: Any, amount: int, tier: str, at: float) -> Any:
        raise NotImplementedError

    def move(self, deal: Any, stage: Any, at: float, **changes: Any) -> None:
        raise NotImplementedError

    def written_back(self, deal: Any) -> Any:
        raise NotImplementedError


class HubSpotDemo(DemoCrm):
    title, kind = "HubSpot", "hubspot"
    rule = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"
    crm_extra = 'token_env = "SYNCD_DEMO_HUBSPOT_TOKEN"'
    won_stage, open_stage = "closedwon", "contractsent"
    writeback = "asana_project_url"

    def __init__(self) -> None:
        self.fake = FakeHubSpot()

    def env(self) -> str:
        return f"SYNCD_DEMO_HUBSPOT_TOKEN={self.fake.token}\n"

    def add(self, name: str, stage: Any, amount: int, tier: str, at: float) -> Any:
        return self.fake.add_deal(
            dealname=name, dealstage=stage, amount=str(amount), tier=tier, closedate="2026-12-15", updated_at=at
        )

    def move(self, deal: Any, stage: Any, at: float, **changes: Any) -> None:
        self.fake.update_deal(deal, dealstage=stage, updated_at=at, **{k: str(v) for k, v in changes.items()})

    def written_back(self, deal: Any) -> Any:
        return self.fake.deals[deal]["properties"].get(self.writeback)


class SalesforceDemo(DemoCrm):
    title, kind = "Salesforce", "salesforce"
    rule = "stage == 'Closed Won' and amount > 10000 and Tier__c == 'Enterprise'"
    crm_extra = (
        'fields = ["Account.Name"]\nclient_id_env = "SYNCD_DEMO_SF_CLIENT_ID"\n'
        'client_secret_env = "SYNCD_DEMO_SF_CLIENT_SECRET"\nrefresh_token_env = "SYNCD_DEMO_SF_REFRESH_TOKEN"'
    )
    won_stage, open_stage = "Closed Won", "Negotiation/Review"
    writeback = "Asana_Project__c"

    def __init__(self) -> None:
        self.fake = FakeSalesforce()
        self.fake.add_field("Tier__c")
        self.fake.add_field(self.writeback)

    def written_back(self, deal: Any) -> Any:
        return self.fake.opportunities[deal].get(self.writeback)

    def env(self) -> str:
        f = self.fake
        return (
            f"SYNCD_DEMO_SF_CLIENT_ID={f.client_id}\nSYNCD_DEMO_SF_CLIENT_SECRET={f.client_secret}\n"
            f"SYNCD_DEMO_SF_REFRESH_TOKEN={f.refresh_token}\n"
        )

    def add(self, name: str, stage: Any, amount: int, tier: str, at: float) -> Any:
        return self.fake.add_opportunity(
            Name=name, StageName=stage, Amount=amount, Tier__c=tier, Account=name, modstamp=at
        )

    def move(self, deal: Any, stage: Any, at: float, **changes: Any) -> None:
        self.fake.update_opportunity(deal, StageName=stage, modstamp=at, **_renamed(changes, amount="Amount"))


class PipedriveDemo(DemoCrm):
    title, kind = "Pipedrive", "pipedrive"
    rule = "status == 'won' and amount > 10000 and tier == 'Enterprise'"
    crm_extra = 'token_env = "SYNCD_DEMO_PIPEDRIVE_TOKEN"'
    won_stage, open_stage = "won", "open"
    writeback = "asana_project"

    def __init__(self) -> None:
        self.fake = FakePipedrive()
        self.fake.add_custom_field("Tier", "enum", ["Enterprise", "Mid-Market"])
        self.key = self.fake.add_custom_field("Asana project", "varchar")

    def written_back(self, deal: Any) -> Any:
        return self.fake.deals[deal].get("custom_fields", {}).get(self.key)

    def env(self) -> str:
        return f"SYNCD_DEMO_PIPEDRIVE_TOKEN={self.fake.token}\n"

    def add(self, name: str, stage: Any, amount: int, tier: str, at: float) -> Any:
        return self.fake.add_deal(
            title=name,
            status=stage,
            value=amount,
            custom={"Tier": tier},
            expected_close_date="2026-12-15",
            update_time=at,
        )

    def move(self, deal: Any, stage: Any, at: float, **changes: Any) -> None:
        self.fake.update_deal(deal, status=stage, update_time=at, **_renamed(changes, amount="value"))


def _renamed(changes: dict[str, Any], **names: str) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in changes.items()}


CRMS: dict[str, type[DemoCrm]] = {"hubspot": HubSpotDemo, "salesforce": SalesforceDemo, "pipedrive": PipedriveDemo}


def run_demo(
    echo: Callable[[str], None],
    cycle: Callable[[Path], CycleReport],
    status: Callable[[Path], str],
    keep: Path | None = None,
    crm_kind: str = "hubspot",
) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "syncd.db").unlink(missing_ok=True)
    crm = CRMS[crm_kind]()
    crm.fake.start()
    asana = FakeAsana().start()
    template = asana.add_template("Customer onboarding", tasks=("Set up the customer's workspace", "Plan training"))
    try:
        config = folder / "config.toml"
        config.write_text(
            CONFIG.format(
                title=crm.title,
                kind=crm.kind,
                crm_url=crm.fake.url,
                crm_extra=crm.crm_extra,
                rule=crm.rule,
                asana=asana.url,
                workspace=asana.workspace,
                team=asana.team,
                template=template,
                writeback=crm.writeback,
            )
        )
        (folder / ".env").write_text(crm.env() + f"SYNCD_DEMO_ASANA_TOKEN={asana.token}\n")

        def ago(seconds: float = 2.0) -> float:
            return crm.fake.now() - seconds

        def run(title: str) -> CycleReport:
            echo(f"\n== {title}")
            report = cycle(config)
            echo("   " + report.summary().replace("\n", "\n   "))
            return report

        won, open_ = crm.won_stage, crm.open_stage
        echo(f"Sandbox: fake {crm.title} at {crm.fake.url}, fake Asana at {asana.url}")
        echo(f"Config and state in {folder}")
        echo(f"Rule: {crm.rule}")
        seed = [
            ("Acme", 50000, "Enterprise"),
            ("Globex", 5000, "Enterprise"),
            ("Initech", 80000, "Mid-Market"),
            ("Umbrella", 120000, "Enterprise"),
        ]
        ids = {name: crm.add(name, open_, amount, tier, ago(60)) for name, amount, tier in seed}
        ids["Hooli"] = crm.add("Hooli", won, 90000, "Enterprise", ago(60))  # won before syncd started watching
        echo(f"Seeded {len(ids)} deals; Hooli is already won.")
        run("Cycle 1: the first run records a baseline (Hooli was won before syncd watched: no project)")

        for name in ("Acme", "Globex", "Initech", "Umbrella"):
            crm.move(ids[name], won, ago())
        echo("\nSales wins Acme, Globex, Initech and Umbrella. Only Acme and Umbrella qualify.")
        echo("Fault injected: Asana instantiates the first project but the connection drops before the answer.")
        asana.inject("drop_after_create", route="instantiate")
        run("Cycle 2: one project created; the other's outcome is unknown (it exists, but syncd never saw a 201)")

        echo("\nWaiting 2.6 s for the settle delay, so a complete listing is trustworthy evidence...")
        time.sleep(2.6)
        run("Cycle 3: reconcile lists the team's projects, finds the marker, records the project: no second POST")

        crm.move(ids["Acme"], open_, ago())
        run("Cycle 4: Acme is reopened")
        time.sleep(1.0)
        crm.move(ids["Acme"], won, ago(), amount=55000)
        run("Cycle 5: Acme is won again; it already has its project, so nothing is created")

        echo("\n== Asana now holds:")
        for project in asana.projects:
            marker = project["notes"].split()[-1]
            echo(f"   {project['gid']}  {project['name']}  (from the template; its notes end with {marker})")
            for task in asana.tasks:
                if any(p["gid"] == project["gid"] for p in task["projects"]):
                    echo(f"       task: {task['name']}" + (f" (due {task['due_on']})" if task.get("due_on") else ""))
        echo("\n== Written back to the CRM:")
        for name in ("Acme", "Umbrella"):
            echo(f"   {name}: {crm.writeback} = {crm.written_back(ids[name])}")
        duplicates = asana.duplicates()
        echo(
            f"   {len(asana.projects)} project(s) from {asana.create_requests + asana.instantiate_requests} create "
            f"request(s), {len(asana.tasks)} task(s); "
            f"duplicates: {duplicates or 'none'}"
        )
        echo("\n== syncd status")
        echo(status(config))
        echo(f"\nTry it yourself: syncd --config {config} status")
    finally:
        crm.fake.stop()
        asana.stop()
