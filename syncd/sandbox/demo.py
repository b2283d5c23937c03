"""`syncd demo [--crm hubspot|salesforce|pipedrive]`: the whole product in seconds, against a fake CRM and
the fake Asana.

It runs the real cycle (config file, .env, SQLite state, HTTP over 127.0.0.1) through callables the CLI hands
in, so the demo cannot drift from what `syncd once` does.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from syncd.models import CycleReport
from syncd.sandbox.configfile import config_toml
from syncd.sandbox.kit import Sandbox

# Sandbox-only variable names: a real token in the user's shell is never used.
VARIABLES = {
    "hubspot": {"token_env": "SYNCD_DEMO_HUBSPOT_TOKEN"},
    "salesforce": {
        "client_id_env": "SYNCD_DEMO_SF_CLIENT_ID",
        "client_secret_env": "SYNCD_DEMO_SF_CLIENT_SECRET",
        "refresh_token_env": "SYNCD_DEMO_SF_REFRESH_TOKEN",
    },
    "pipedrive": {"token_env": "SYNCD_DEMO_PIPEDRIVE_TOKEN"},
}
# Close dates that make the kickoff task due on 2026-12-22. Salesforce's deals have always kept the fake's
# CloseDate, the day they were created, so their task is due a week from today.
CLOSE_DATES = {"hubspot": "2026-12-15", "pipedrive": "2026-12-15"}
COMMENTS = {
    "asana.token_env": "sandbox-only names: a real token in your shell is never used",
    "asana.settle_seconds": "> read_timeout: how long a lost answer may still turn into a project",
    "flow.project.template": "the project starts from an Asana project template",
    "flow.writeback.property": "the project URL goes back onto the deal",
}


def write_config(folder: Path, box: Sandbox, template: str, writeback: str) -> Path:
    """config.toml and .env for the sandbox in `folder`."""
    tables = box.tables()
    flow = {
        "name": "onboarding",
        "when": box.crm.rule,
        "project": {"name": "Onboarding: {name}", "template": template},
        "tasks": [
            {"name": "Kickoff call with {name}", "notes": "Deal {id}, {amount:,.0f} USD", "due_days_after_close": 7},
            {"name": "Send the welcome pack to {name}"},
        ],
        "writeback": {"property": writeback},
    }
    text = config_toml(
        {
            "state": {"path": "syncd.db"},
            "crm": {**tables["crm"], "overlap_seconds": 300, "delay_seconds": 1},
            "asana": {**tables["asana"], "settle_seconds": 2.5},
            "http": {"connect_timeout": 2, "read_timeout": 2, "retry_base_seconds": 0.05},
        },
        [flow],
        header=f"Written by 'syncd demo': the sandbox's fake {box.crm.title} and fake Asana on 127.0.0.1.",
        comments=COMMENTS,
    )
    config = folder / "config.toml"
    config.write_text(text)
    env = folder / ".env"
    env.touch(mode=0o600)  # it holds (fake) tokens: readable by this user only, as a real .env must be
    env.write_text("".join(f"{name}={value}\n" for name, value in box.env().items()))
    return config


def run_demo(
    echo: Callable[[str], None],
    cycle: Callable[[Path], CycleReport],
    status: Callable[[Path], str],
    keep: Path | None = None,
    crm_kind: str = "hubspot",
) -> None:
    """The walkthrough. Its files (`FILES`) go to `keep`, which must not hold any of them already, or to a
    temporary folder that is removed at the end (it holds a `.env`)."""
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _walk_through(echo, cycle, status, folder, crm_kind)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if keep:
        echo(f"\nTry it yourself: syncd --config {folder / 'config.toml'} status")
    else:
        echo("\nThe sandbox's files are removed; 'syncd demo --keep DIR' keeps them.")


FILES = ("config.toml", ".env", "syncd.db", "syncd.db-wal", "syncd.db-shm", "syncd.db.lock")


def _walk_through(
    echo: Callable[[str], None],
    cycle: Callable[[Path], CycleReport],
    status: Callable[[Path], str],
    folder: Path,
    crm_kind: str,
) -> None:
    with Sandbox(crm_kind, variables=VARIABLES[crm_kind], asana_variable="SYNCD_DEMO_ASANA_TOKEN") as box:
        crm, asana = box.crm, box.asana
        tasks = ("Set up the customer's workspace", "Plan training")
        template = asana.add_template("Customer onboarding", tasks=tasks)
        writeback = crm.add_writeback()
        config = write_config(folder, box, template, writeback)
        close_date = CLOSE_DATES.get(crm_kind)

        def ago(seconds: float = 2.0) -> float:
            return crm.ago(seconds)

        def run(title: str) -> CycleReport:
            echo(f"\n== {title}")
            report = cycle(config)
            echo("   " + report.summary().replace("\n", "\n   "))
            return report

        echo(f"Sandbox: fake {crm.title} at {crm.fake.url}, fake Asana at {asana.url}")
        echo(f"Config and state in {folder}")
        echo(f"Rule: {crm.rule}")
        seed = [
            ("Acme", 50000, "Enterprise"),
            ("Globex", 5000, "Enterprise"),
            ("Initech", 80000, "Mid-Market"),
            ("Umbrella", 120000, "Enterprise"),
        ]
        ids = {name: crm.add(name, amount=amount, tier=tier, close_date=close_date) for name, amount, tier in seed}
        ids["Hooli"] = crm.add("Hooli", amount=90000, won=True, close_date=close_date)  # won before syncd watched
        echo(f"Seeded {len(ids)} deals; Hooli is already won.")
        run("Cycle 1: the first run records a baseline (Hooli was won before syncd watched: no project)")

        for name in ("Acme", "Globex", "Initech", "Umbrella"):
            crm.win(ids[name], at=ago())
        echo("\nSales wins Acme, Globex, Initech and Umbrella. Only Acme and Umbrella qualify.")
        echo("Fault injected: Asana instantiates the first project but the connection drops before the answer.")
        asana.inject("drop_after_create", route="instantiate")
        run("Cycle 2: one project created; the other's outcome is unknown (it exists, but syncd never saw a 201)")

        echo("\nWaiting 2.6 s for the settle delay, so a complete listing is trustworthy evidence...")
        time.sleep(2.6)
        run("Cycle 3: reconcile lists the team's projects, finds the marker, records the project: no second POST")

        crm.reopen(ids["Acme"], at=ago())
        run("Cycle 4: Acme is reopened")
        time.sleep(1.0)
        crm.win(ids["Acme"], at=ago(), amount=55000)
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
            echo(f"   {name}: {writeback} = {crm.written_back(ids[name])}")
        duplicates = asana.duplicates()
        echo(
            f"   {len(asana.projects)} project(s) from {asana.create_requests + asana.instantiate_requests} create "
            f"request(s), {len(asana.tasks)} task(s); "
            f"duplicates: {duplicates or 'none'}"
        )
        echo("\n== syncd status")
        echo(status(config))
