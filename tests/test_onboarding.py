"""Richer onboarding: project fields, the CRM write-back, the Slack message, the re-fire policy, tasks and
templates; every side effect exactly once, and the write-back never loops."""

from __future__ import annotations

import pytest

from syncd.sandbox.webhook import FakeWebhook

from conftest import FAST, Syncd, win

RULE = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"


@pytest.fixture
def slack():
    fake = FakeWebhook().start()
    yield fake
    fake.stop()


def seed(syncd: Syncd, n: int = 1) -> list[str]:
    ids = [
        syncd.hubspot.add_deal(
            dealname=f"Deal {i}",
            dealstage="contractsent",
            amount="50000",
            tier="Enterprise",
            closedate="2026-12-01",
            updated_at=syncd.ago(60),
        )
        for i in range(n)
    ]
    syncd.ok("once")
    return ids


def flow(**extra: object) -> dict:
    return {"name": "onboarding", "when": RULE, **extra}


def test_project_fields_come_from_the_flow_and_the_deal(syncd: Syncd) -> None:
    syncd.config(
        flows=[
            flow(
                project={
                    "name": "Onboarding: {name}",
                    "notes": "Tier {tier}",
                    "color": "dark-green",
                    "privacy": "private",
                    "due_days_after_close": 30,
                }
            )
        ]
    )
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.ok("once")
    (project,) = syncd.asana.projects
    assert project["color"] == "dark-green" and project["due_on"] == "2026-12-31"
    assert project["privacy_setting"] == "private"


def test_writeback_puts_the_url_on_the_deal_once_and_does_not_loop(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow(writeback={"property": "asana_project_url"})])
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.hubspot.inject("503", route="patch")  # the first write-back attempt fails: retried
    syncd.ok("once")
    for _ in range(3):
        syncd.tick(1.1)  # the write-back bumped the deal: let the next cycles see that version
        syncd.ok("once")
    url = syncd.hubspot.deals[deal]["properties"]["asana_project_url"]
    assert url == syncd.asana.projects[0]["permalink_url"]
    patches = [r for r in syncd.hubspot.requests if r.method == "PATCH"]
    assert len(patches) == 2  # one failed (503), one landed; never again
    assert len(syncd.asana.projects) == 1 and syncd.asana.create_requests == 1
    assert syncd.query("SELECT state FROM effects") == [("done",)]


def test_a_slack_message_per_created_project_exactly_once(syncd: Syncd, slack: FakeWebhook) -> None:
    syncd.config(
        flows=[
            flow(notify={"slack_webhook_env": "SLACK_WEBHOOK_URL", "text": "New onboarding for {name}: {project_url}"})
        ]
    )
    env_file = syncd.workdir / ".env"
    env_file.write_text(f"SLACK_WEBHOOK_URL={slack.url}/services/T000/B000/secretpart\n")
    (deal,) = seed(syncd)
    win(syncd, deal)
    first = syncd("-v", "once")
    syncd.ok("once")
    assert slack.texts() == [f"New onboarding for Deal 0: {syncd.asana.projects[0]['permalink_url']}"]
    assert "POST" in first.stderr and "secretpart" not in first.stdout + first.stderr
    env_file.unlink()
    assert syncd("once").returncode == 78  # the variable is required once a flow names it


def test_a_lost_slack_answer_is_not_resent(syncd: Syncd, slack: FakeWebhook) -> None:
    syncd.config(
        http=FAST["http"], asana=FAST["asana"], flows=[flow(notify={"slack_webhook_env": "SLACK_WEBHOOK_URL"})]
    )
    (syncd.workdir / ".env").write_text(f"SLACK_WEBHOOK_URL={slack.url}/services/T/B/x\n")
    (deal,) = seed(syncd)
    win(syncd, deal)
    slack.inject("drop")
    syncd("once")
    syncd.tick(0.7)
    syncd("once")
    assert len(slack.received) == 1
    assert syncd.query("SELECT state FROM effects") == [("dead",)]
    status = syncd("status")
    assert status.returncode == 1 and "dead follow-up(s)" in status.stdout


def test_per_entry_refire_creates_one_project_per_entry(syncd: Syncd) -> None:
    syncd.config(flows=[flow(refire="per_entry")])
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.ok("once")
    syncd.tick(1.0)
    syncd.hubspot.update_deal(deal, dealstage="contractsent", updated_at=syncd.ago(2))
    syncd.ok("once")
    syncd.tick(1.0)
    win(syncd, deal)
    syncd.ok("once")
    syncd.ok("once")
    notes = sorted(p["notes"].splitlines()[-1] for p in syncd.asana.projects)
    assert notes == [f"[syncd:hubspot:default:{deal}:onboarding#2]", f"[syncd:hubspot:default:{deal}:onboarding]"]


def test_tasks_are_created_once_each_even_when_an_answer_is_lost(syncd: Syncd) -> None:
    tasks = [
        {"name": "Kickoff with {name}", "notes": "Deal {id}", "due_days_after_close": 7},
        {"name": "Send welcome pack"},
    ]
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow(tasks=tasks)])
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.asana.inject("drop_after_create", route="task_create")  # the first task exists, its answer is lost
    syncd("once")
    for _ in range(4):
        syncd.tick(0.7)
        syncd("once")
    (project,) = syncd.asana.projects
    made = syncd.asana.tasks_with_marker(f"[syncd-task:onboarding:hubspot:default:{deal}/")
    assert sorted(t["name"] for t in made) == ["Kickoff with Deal 0", "Send welcome pack"]
    assert all(t["projects"][0]["gid"] == project["gid"] for t in made)
    assert next(t for t in made if t["name"].startswith("Kickoff"))["due_on"] == "2026-12-08"
    assert syncd.asana.duplicates() == {}
    assert syncd.query("SELECT state, count(*) FROM effects GROUP BY state") == [("done", 2)]


def lose_the_task_answer(syncd: Syncd) -> None:
    """One deal won; Asana creates its task and the answer is lost; three more cycles, settle apart."""
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.asana.inject("drop_after_create", route="task_create")
    syncd("once")
    for _ in range(3):
        syncd.tick(0.7)
        syncd("once")


@pytest.mark.parametrize("refused", [None, 400, 403])
def test_a_lost_task_answer_is_reconciled_by_marker_when_external_ids_are_ignored(
    syncd: Syncd, refused: int | None
) -> None:
    """An OAuth token whose external ids Asana ignores, or whose lookup it refuses outright (`refused`): neither
    may kill the task's follow-up, the listing by marker decides. (With a personal token syncd never asks.)"""
    asana = {**FAST["asana"], "auth": "oauth"}
    syncd.config(http=FAST["http"], asana=asana, flows=[flow(tasks=[{"name": "Kickoff {name}"}])])
    syncd.asana.ignore_external, syncd.asana.external_lookup_status = True, refused
    lose_the_task_answer(syncd)
    assert any(r.path.startswith("/tasks/external:") for r in syncd.asana.requests), "the lookup was asked"
    assert [t["name"] for t in syncd.asana.tasks] == ["Kickoff Deal 0"]
    assert syncd.asana.task_create_requests == 1
    assert syncd.query("SELECT state FROM effects") == [("done",)]


@pytest.mark.parametrize("auth", ["token", "oauth"])
def test_tasks_carry_an_external_id_only_with_an_oauth_token(syncd: Syncd, auth: str) -> None:
    """External data "is only available to OAuth applications": with any other token the marker is the key."""
    syncd.config(
        http=FAST["http"], asana={**FAST["asana"], "auth": auth}, flows=[flow(tasks=[{"name": "Kickoff {name}"}])]
    )
    lose_the_task_answer(syncd)
    assert len(syncd.asana.tasks) == 1
    posted = [r.json()["data"] for r in syncd.asana.requests if r.method == "POST" and r.path == "/tasks"]
    lookups = [r for r in syncd.asana.requests if r.path.startswith("/tasks/external:")]
    assert len(posted) == 1 and syncd.query("SELECT state FROM effects") == [("done",)]
    if auth == "oauth":
        assert "external" in posted[0] and lookups, "an OAuth app finds its task by the external id"
    else:
        assert "external" not in posted[0] and not lookups, "a personal token never sends or asks for one"


def test_announced_asana_changes_are_listed_by_check_and_the_opt_ins_are_sent(syncd: Syncd) -> None:
    syncd.asana.announce("name=new_goal_memberships;info=https://forum.asana.com/t/123;affected=true")
    syncd.config(asana={"enable_changes": ["new_goal_memberships"], "disable_changes": ["old_thing"]})
    result = syncd("check")
    assert "Asana announces API change 'new_goal_memberships' (this request is affected)" in result.stdout
    assert "https://forum.asana.com/t/123" in result.stdout
    sent = syncd.asana.requests[-1].headers
    assert sent.get("asana-enable") == "new_goal_memberships" and sent.get("asana-disable") == "old_thing"


def test_a_template_project_is_instantiated_once_and_gets_its_marker(syncd: Syncd) -> None:
    template = syncd.asana.add_template("Onboarding template", duration=0.0)
    syncd.config(
        http=FAST["http"],
        asana=FAST["asana"],
        flows=[flow(project={"name": "Onboarding: {name}", "template": template}, tasks=[{"name": "Extra task"}])],
    )
    (deal,) = seed(syncd)
    win(syncd, deal)
    syncd.asana.inject("drop_after_create", route="instantiate")  # made, answer lost: reconcile by name
    syncd("once")
    for _ in range(4):
        syncd.tick(0.7)
        syncd("once")
    (project,) = syncd.asana.projects
    marker = f"[syncd:hubspot:default:{deal}:onboarding]"
    assert project["name"] == "Onboarding: Deal 0" and marker in project["notes"]
    assert syncd.asana.instantiate_requests == 1
    assert [t["name"] for t in syncd.asana.tasks_with_marker("[syncd-task:")] == ["Extra task"]
