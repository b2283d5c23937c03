"""HubSpot close dates are instants; people mean the portal's calendar day (issue 12, row 11)."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from syncd.sources.hubspot import calendar_day, portal_zone

from conftest import Syncd, win

RULE = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"


@pytest.mark.parametrize(
    ("zone", "due"),
    [
        (ZoneInfo("Europe/Berlin"), "2026-10-01"),  # 00:30 on 1 October in Berlin
        (timezone(timedelta(hours=-5)), "2026-09-30"),  # a zone only the offset names: 17:30 on the 30th
    ],
)
def test_the_project_is_due_from_the_close_date_in_the_portals_zone(syncd: Syncd, zone, due) -> None:
    syncd.hubspot.time_zone = zone
    project = {"name": "Onboarding: {name}", "due_days_after_close": 0}
    syncd.config(flows=[{"name": "onboarding", "when": RULE, "project": project}])
    deal = syncd.hubspot.add_deal(
        dealname="Late close", dealstage="contractsent", amount="50000", tier="Enterprise",
        closedate="2026-09-30T22:30:00Z", updated_at=syncd.ago(60),
    )  # fmt: skip
    syncd.ok("once")
    win(syncd, deal)
    syncd.ok("once")
    (created,) = syncd.asana.projects
    assert created["due_on"] == due


def test_calendar_day_and_zone_reading() -> None:
    berlin = portal_zone({"timeZone": "Europe/Berlin", "utcOffsetMilliseconds": 3_600_000})
    assert calendar_day("2026-09-30T22:30:00Z", berlin) == "2026-10-01"
    assert calendar_day("2026-09-30T22:30:00.000Z", UTC) == "2026-09-30"
    assert calendar_day("1790807400000", berlin) == "2026-10-01"  # epoch ms, as in filters
    assert calendar_day("2026-09-30", berlin) == "2026-09-30"  # already a day
    assert calendar_day("", berlin) is None
    unknown = portal_zone({"timeZone": "Mars/Olympus", "utcOffsetMilliseconds": 19_800_000})
    assert calendar_day("2026-09-30T20:00:00Z", unknown) == "2026-10-01"
    assert portal_zone(None) is UTC
