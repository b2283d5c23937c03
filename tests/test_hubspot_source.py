"""The HubSpot source against the fake HubSpot over HTTP: windows, ties, the 10,000 cap, lag, skew, bad input,
the daily limit."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.errors import QuotaExhausted, RateLimited, TransientError
from syncd.http import HttpClient, RetryPolicy
from syncd.models import Page
from syncd.ratelimit import TokenBucket
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sources.hubspot import HubSpotSource, parse_deal, parse_timestamp_ms
from syncd.sources.hubspot_profile import PROFILE

NAMES = ("name", "stage", "amount", "tier")


def source_for(
    hubspot: FakeHubSpot, page_size: int = 200, search_per_second: float = 1e6, **client: Any
) -> HubSpotSource:
    http = HttpClient(
        service="hubspot",
        base_url=hubspot.url,
        auth_headers={"Authorization": f"Bearer {hubspot.token}"},
        buckets={
            "default": TokenBucket.for_limit(1e6, 1.0),
            "search": TokenBucket.for_limit(search_per_second, 1.0),
        },
        profile=PROFILE,
        timeout=(1.0, 2.0),
        retry=RetryPolicy(max_tries=3, base=0.0),
        **client,
    )
    return HubSpotSource(http, NAMES, page_size=page_size)


def read_window(source: HubSpotSource, since_ms: int | None = None, delay_ms: int = 1000) -> list[Page]:
    return list(source.pages(since_ms, delay_ms))


def seen_ids(pages: list[Page]) -> set[str]:
    return {deal.id for page in pages for deal in page.deals}


def test_asks_for_exactly_the_properties_the_flows_use(hubspot: FakeHubSpot) -> None:
    source = source_for(hubspot)
    read_window(source)
    body = hubspot.requests[-1].json()
    asked = ["amount", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_merged_object_ids", "tier"]
    assert body["properties"] == asked  # the flows' properties, plus creation time and merges
    assert body["limit"] == 200
    assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]


def test_ties_at_a_page_boundary_lose_nothing(hubspot: FakeHubSpot) -> None:
    t = hubspot.now() - 100
    before = hubspot.bulk_add(150, updated_at=t - 1, dealstage="a")
    tied = hubspot.bulk_add(450, updated_at=t, dealstage="b")  # straddles pages 1-4 of 200
    after = hubspot.bulk_add(150, updated_at=t + 1, dealstage="c")
    pages = read_window(source_for(hubspot))
    assert seen_ids(pages) == set(before) | set(tied) | set(after)
    cursors = [page.cursor_ms for page in pages]
    assert cursors == sorted(cursors), "the cursor never moves backwards"
    assert cursors[-1] >= int(t * 1000) + 1000


def test_more_than_10000_changed_deals_in_one_window(hubspot: FakeHubSpot) -> None:
    t0 = hubspot.now() - 20_000
    ids = [hubspot.add_deal(updated_at=t0 + i, dealstage="x") for i in range(10_250)]
    pages = read_window(source_for(hubspot))
    assert seen_ids(pages) == set(ids)
    searches = hubspot.search_requests
    print(f"10,250 distinct timestamps: {searches} search requests for {len(ids)} deals")
    assert searches <= len(ids) // 199 + 3
    assert all("after" not in r.json() for r in hubspot.requests if r.path.endswith("/search"))


def test_more_than_10000_deals_sharing_one_timestamp_terminate(hubspot: FakeHubSpot) -> None:
    t = hubspot.now() - 60
    ids = hubspot.bulk_add(10_100, updated_at=t, dealstage="x")
    later = hubspot.add_deal(updated_at=t + 1, dealstage="y")
    pages = read_window(source_for(hubspot))
    assert seen_ids(pages) == set(ids) | {later}
    print(f"10,100 deals on one timestamp: {hubspot.search_requests} search requests")
    assert hubspot.search_requests <= 10_101 // 200 + 4


def test_mixed_length_ids_within_one_timestamp(hubspot: FakeHubSpot) -> None:
    t = hubspot.now() - 60
    ids = [hubspot.add_deal(id=deal_id, updated_at=t) for deal_id in ("9", "10", "11", "100", "99999999999")]
    ids += hubspot.bulk_add(30, updated_at=t)
    pages = read_window(source_for(hubspot, page_size=7))
    assert seen_ids(pages) == set(ids)


def test_the_window_ends_at_hubspot_clock_minus_the_delay_whatever_the_local_clock(hubspot: FakeHubSpot) -> None:
    for skew in (-120.0, 120.0):
        hubspot.clock_offset = skew
        inside = hubspot.add_deal(updated_at=hubspot.now() - 5)
        too_new = hubspot.add_deal(updated_at=hubspot.now())
        pages = read_window(source_for(hubspot), delay_ms=2000)
        assert inside in seen_ids(pages) and too_new not in seen_ids(pages)
        assert abs(pages[-1].cursor_ms / 1000 - (hubspot.now() - 2)) < 2.5


def test_index_lag_is_covered_by_the_overlap_on_the_next_cycle(hubspot: FakeHubSpot) -> None:
    hubspot.index_lag = 30
    source = source_for(hubspot)
    old = hubspot.add_deal(updated_at=hubspot.now() - 100)
    fresh = hubspot.add_deal(updated_at=hubspot.now() - 5)  # changed, but not in the index yet
    first = read_window(source)
    assert seen_ids(first) == {old}
    hubspot.clock_offset += 60  # a minute later the index has caught up
    second = read_window(source, since_ms=first[-1].cursor_ms - 300_000)
    assert fresh in seen_ids(second)


def test_malformed_records_are_quarantined_with_id_and_reason(hubspot: FakeHubSpot) -> None:
    t = hubspot.now() - 60
    good = hubspot.add_deal(updated_at=t, dealname="Good", amount="12000.50")
    stamp = f"{int(t * 1000)}"
    hubspot.add_raw_deal({"id": "501", "properties": {"hs_lastmodifieddate": "yesterday-ish"}})
    hubspot.add_raw_deal({"id": "502", "properties": {"hs_lastmodifieddate": stamp, "amount": "12k"}})
    hubspot.add_raw_deal({"id": "503", "properties": "not an object"})
    hubspot.add_raw_deal({"id": "504", "properties": {"hs_lastmodifieddate": stamp, "dealname": ["a", "list"]}})
    hubspot.add_raw_deal({"id": "505", "properties": {"hs_lastmodifieddate": stamp, "dealname": "x" * 200_000}})
    pages = read_window(source_for(hubspot))
    assert seen_ids(pages) == {good}
    reasons = {q.record_id: q.reason for page in pages for q in page.quarantined}
    assert set(reasons) == {"501", "502", "503", "504", "505"}
    assert "not a timestamp" in reasons["501"] and "not a number" in reasons["502"]
    deal = next(d for p in pages for d in p.deals)
    assert deal.amount == 12000.5 and deal.name == "Good"


@pytest.mark.parametrize("kind", ["malformed_json", "wrong_envelope"])
def test_an_unreadable_page_is_a_transient_error_and_yields_nothing(hubspot: FakeHubSpot, kind: str) -> None:
    hubspot.add_deal(updated_at=hubspot.now() - 60)
    hubspot.inject(kind, times=5, route="search")
    source = source_for(hubspot)
    with pytest.raises(TransientError):
        read_window(source)


def test_transient_search_failures_are_retried(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal(updated_at=hubspot.now() - 60)
    hubspot.inject("502", route="search")
    hubspot.inject("429", route="search")
    assert seen_ids(read_window(source_for(hubspot))) == {deal}


def test_a_ten_secondly_429_is_still_retried(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal(updated_at=hubspot.now() - 60)
    hubspot.inject("429", times=2, route="search")  # policyName TEN_SECONDLY_ROLLING
    pauses: list[float] = []
    assert seen_ids(read_window(source_for(hubspot, on_pause=pauses.append))) == {deal}
    assert hubspot.search_requests == 3 and pauses == []


def test_a_daily_429_is_not_retried_and_pauses_hubspot_until_the_next_full_utc_hour(hubspot: FakeHubSpot) -> None:
    hubspot.add_deal(updated_at=hubspot.now() - 60)
    hubspot.daily_used = hubspot.daily_limit
    pauses: list[float] = []
    source = source_for(hubspot, on_pause=pauses.append)
    with pytest.raises(QuotaExhausted, match=r"daily limit.*policyName DAILY.*pause until") as caught:
        read_window(source)
    assert hubspot.search_requests == 1, "one request for the call: no retries"
    expected = 3600 - hubspot.now() % 3600 + 30
    assert caught.value.retry_after == pytest.approx(expected, abs=2)
    assert pauses == [pytest.approx(hubspot.now() + expected, abs=2)]  # what the engine saves for a restart
    with pytest.raises(RateLimited, match="resuming next cycle"):
        read_window(source)  # a second call within the pause
    with pytest.raises(RateLimited):
        source.write_back("7", "asana_url", "https://app.asana.com/0/1")  # another bucket: paused too
    assert len(hubspot.requests) == 1, "nothing sent within the pause"


def test_after_the_portals_midnight_the_next_cycle_asks_once_and_resumes(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal(updated_at=hubspot.now() - 60)
    hubspot.daily_used = hubspot.daily_limit
    with pytest.raises(QuotaExhausted) as caught:
        read_window(source_for(hubspot))
    until = hubspot.now() + (caught.value.retry_after or 0)
    sent = len(hubspot.requests)
    early = source_for(hubspot, wall=hubspot.now)
    early.http.pause_until_wall(until)  # a restart within the pause honours it
    with pytest.raises(RateLimited):
        read_window(early)
    assert len(hubspot.requests) == sent
    hubspot.clock_offset += 86_400  # a day later: past midnight in the portal's zone, past the pause
    restarted = source_for(hubspot, wall=hubspot.now)
    restarted.http.pause_until_wall(until)  # what Cycle.run does with the saved pause
    assert seen_ids(read_window(restarted)) == {deal}
    assert hubspot.daily_used == 1


def test_the_search_rate_limit_is_respected_proactively(hubspot: FakeHubSpot) -> None:
    hubspot.search_rate_per_second = 5
    t = hubspot.now() - 600
    for i in range(12):
        hubspot.bulk_add(200, updated_at=t + i)
    read_window(source_for(hubspot, search_per_second=5))
    assert hubspot.search_requests >= 12
    assert hubspot.rate_limited == 0


def test_timestamps_parse_exactly_to_the_millisecond() -> None:
    assert parse_timestamp_ms("2024-09-13T20:23:03.333Z") == 1726258983333
    assert parse_timestamp_ms("1726258983333") == 1726258983333
    assert parse_timestamp_ms("2024-09-13T22:23:03.333+02:00") == 1726258983333
    assert parse_timestamp_ms("2024-13-45T00:00:00Z") is None
    assert parse_timestamp_ms("") is None and parse_timestamp_ms(None) is None


def test_parse_deal_normalises_hubspot_strings() -> None:
    deal = parse_deal(
        {
            "id": "42",
            "properties": {
                "hs_lastmodifieddate": "2024-09-13T20:23:03.333Z",
                "amount": "1,500.25",
                "dealstage": "closedwon",
                "tier": "Enterprise",
            },
        }
    )
    assert (deal.id, deal.amount, deal.stage, deal.updated_at_ms) == ("42", 1500.25, "closedwon", 1726258983333)
    assert deal.values()["tier"] == "Enterprise" and deal.values()["updated_at"] == "2024-09-13T20:23:03.333Z"
    with pytest.raises(ValueError, match="usable 'id'"):
        parse_deal({"id": "../etc", "properties": {}})
