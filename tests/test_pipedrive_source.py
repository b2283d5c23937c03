"""The Pipedrive source against the fake Pipedrive over HTTP: token, custom fields, window, ties, bad input, limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from syncd import rules
from syncd.errors import EX_CONFIG, AuthError, RateLimited, SourceSetupError, TransientError
from syncd.http import HttpClient, RetryPolicy
from syncd.models import Page
from syncd.ratelimit import TokenBucket
from syncd.sandbox.pipedrive import COSTS, EDGE_PAGE, FakePipedrive, rfc3339
from syncd.sources.pipedrive import PROFILE, PipedriveSource, parse_deal, parse_timestamp_ms
from syncd.sources.pipedrive_fields import friendly_name

TOKEN = "pd-canary-token-5e1f0c2a9b"
NAMES = ("name", "stage", "amount", "status", "tier", "deal_size_band", "regions", "no_such_field")


@pytest.fixture
def pipedrive() -> Iterator[FakePipedrive]:
    fake = FakePipedrive(token=TOKEN)
    with fake:
        yield fake


class Timer:
    """The source's monotonic timer, which a test moves instead of sleeping (`moved` seconds ahead)."""

    def __init__(self) -> None:
        self.moved = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.moved


def source_for(
    pipedrive: FakePipedrive, names: tuple[str, ...] = NAMES, page_size: int = 500, timer: Timer | None = None
) -> PipedriveSource:
    http = HttpClient(
        service="pipedrive",
        base_url=pipedrive.url,
        auth_headers={"x-api-token": TOKEN},
        buckets={"default": TokenBucket.for_limit(1e6, 1.0)},
        profile=PROFILE,
        timeout=(1.0, 2.0),
        retry=RetryPolicy(max_tries=3, base=0.0),
    )
    return PipedriveSource(http, names, page_size=page_size, timer=timer or Timer())


def read_window(source: PipedriveSource, since_ms: int | None = None, delay_ms: int = 1000) -> list[Page]:
    return list(source.pages(since_ms, delay_ms))


def seen_ids(pages: list[Page]) -> set[str]:
    return {deal.id for page in pages for deal in page.deals}


def deals_queries(pipedrive: FakePipedrive) -> list[dict[str, str]]:
    return [r.query for r in pipedrive.requests if r.path == "/api/v2/deals"]


def field_listings(pipedrive: FakePipedrive) -> tuple[int, int]:
    """(listings begun, pages read) of `GET /api/v2/dealFields`."""
    queries = [r.query for r in pipedrive.requests if r.path == "/api/v2/dealFields"]
    return sum("cursor" not in q for q in queries), len(queries)


def test_the_token_travels_only_in_the_x_api_token_header(pipedrive: FakePipedrive) -> None:
    pipedrive.add_deal(update_time=pipedrive.now() - 60)
    read_window(source_for(pipedrive))
    assert pipedrive.tokens_in_query == 0
    assert pipedrive.requests and all(r.headers.get("x-api-token") == TOKEN for r in pipedrive.requests)
    assert all(TOKEN not in str(r.query) and "authorization" not in r.headers for r in pipedrive.requests)


def test_asks_for_the_window_sorted_by_update_time_and_only_the_custom_fields_flows_use(
    pipedrive: FakePipedrive,
) -> None:
    tier = pipedrive.add_custom_field("Tier", "enum", ["Standard", "Enterprise"])
    band = pipedrive.add_custom_field("Deal Size Band", "varchar")
    pipedrive.add_custom_field("Unused", "varchar")
    read_window(source_for(pipedrive), since_ms=1_726_258_983_456)
    (query,) = deals_queries(pipedrive)
    assert query["updated_since"] == "2024-09-13T20:23:03Z"  # floored: the lower bound is inclusive
    assert query["sort_by"] == "update_time" and query["sort_direction"] == "asc" and query["limit"] == "500"
    assert query["custom_fields"] == ",".join(sorted([tier, band]))
    assert "updated_until" in query


def test_custom_fields_by_friendly_name_with_option_labels(pipedrive: FakePipedrive) -> None:
    pipedrive.add_custom_field("Tier", "enum", ["Standard", "Enterprise"])
    pipedrive.add_custom_field("Deal Size Band", "varchar")
    pipedrive.add_custom_field("Regions", "set", ["EU", "US", "APAC"])
    t = pipedrive.now() - 60
    won = pipedrive.add_deal(
        update_time=t,
        title="Acme",
        status="won",
        value=50_000,
        stage_id=4,
        custom={"Tier": "Enterprise", "Deal Size Band": "L", "Regions": ["EU", "APAC"]},
    )
    standard = pipedrive.add_deal(update_time=t, status="won", custom={"Tier": "Standard"})
    open_deal = pipedrive.add_deal(update_time=t, custom={"Tier": "Enterprise"})
    pages = read_window(source_for(pipedrive))
    deals = {d.id: d for p in pages for d in p.deals}
    values = deals[str(won)].values()
    assert values["tier"] == "Enterprise" and values["deal_size_band"] == "L"
    assert values["regions"] == ["EU", "APAC"]
    assert (values["name"], values["amount"], values["stage"], values["status"]) == ("Acme", 50_000.0, "4", "won")
    assert values.get("no_such_field") is None
    rule = rules.parse("status == 'won' and tier == 'Enterprise' and 'EU' in regions")
    assert [d for d in deals if rule.evaluate(deals[d].values())] == [str(won)]
    assert deals[str(standard)].values()["tier"] == "Standard"
    assert deals[str(open_deal)].values()["regions"] is None


def test_custom_fields_are_found_on_later_pages_of_the_field_list(pipedrive: FakePipedrive) -> None:
    for i in range(500):
        pipedrive.add_custom_field(f"Filler {i}")
    pipedrive.add_custom_field("Tier", "enum", ["Enterprise"])
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60, custom={"Tier": "Enterprise"})
    pages = read_window(source_for(pipedrive))
    assert [d.values()["tier"] for p in pages for d in p.deals if d.id == str(deal)] == ["Enterprise"]
    assert sum(r.path == "/api/v2/dealFields" for r in pipedrive.requests) == 2


def test_more_than_15_custom_fields_is_a_config_error(pipedrive: FakePipedrive) -> None:
    names = tuple(f"field_{i}" for i in range(16))
    for name in names:
        pipedrive.add_custom_field(name.replace("_", " ").title())
    with pytest.raises(SourceSetupError, match="16 Pipedrive custom fields") as caught:
        read_window(source_for(pipedrive, names=names))
    assert caught.value.exit_code == EX_CONFIG
    assert deals_queries(pipedrive) == []


def test_two_custom_fields_with_one_friendly_name_is_a_config_error(pipedrive: FakePipedrive) -> None:
    pipedrive.add_custom_field("Tier")
    pipedrive.add_custom_field("TIER")
    with pytest.raises(SourceSetupError, match="`tier`") as caught:
        read_window(source_for(pipedrive))
    assert caught.value.exit_code == EX_CONFIG


def test_1200_deals_in_one_second_are_all_seen(pipedrive: FakePipedrive) -> None:
    t = int(pipedrive.now()) - 100
    before = [pipedrive.add_deal(update_time=t - 1) for _ in range(30)]
    tied = [pipedrive.add_deal(update_time=t) for _ in range(1200)]
    after = [pipedrive.add_deal(update_time=t + 1) for _ in range(30)]
    pages = read_window(source_for(pipedrive, page_size=500))
    assert len(pages) == 3
    assert seen_ids(pages) == {str(i) for i in before + tied + after}
    cursors = [page.cursor_ms for page in pages]
    assert cursors[:2] == [t * 1000, t * 1000], "a page ending inside a tie stops the cursor at the tie"
    assert cursors == sorted(cursors) and cursors[-1] > (t + 1) * 1000


def test_pages_to_the_end_and_each_cursor_is_the_newest_update_time(pipedrive: FakePipedrive) -> None:
    t0 = int(pipedrive.now()) - 2000
    ids = [pipedrive.add_deal(update_time=t0 + i) for i in range(1050)]
    pages = read_window(source_for(pipedrive, page_size=500))
    assert [len(p.deals) for p in pages] == [500, 500, 50]
    assert seen_ids(pages) == {str(i) for i in ids}
    assert [p.cursor_ms for p in pages[:2]] == [(t0 + 499) * 1000, (t0 + 999) * 1000]
    assert pipedrive.deals_requests == 3
    assert [q.get("cursor") is None for q in deals_queries(pipedrive)] == [True, False, False]


def test_an_idle_window_yields_one_empty_page_that_advances_the_cursor(pipedrive: FakePipedrive) -> None:
    pages = read_window(source_for(pipedrive), since_ms=int(pipedrive.now() * 1000) - 300_000)
    assert len(pages) == 1 and pages[0].deals == [] and pages[0].quarantined == []
    assert abs(pages[0].cursor_ms / 1000 - (pipedrive.now() - 1)) < 2.5


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_the_window_ends_at_pipedrive_clock_minus_the_delay(pipedrive: FakePipedrive, skew: float) -> None:
    pipedrive.clock_offset = skew
    inside = pipedrive.add_deal(update_time=pipedrive.now() - 5)
    too_new = pipedrive.add_deal(update_time=pipedrive.now())
    pages = read_window(source_for(pipedrive), delay_ms=2000)
    assert str(inside) in seen_ids(pages) and str(too_new) not in seen_ids(pages)
    assert abs(pages[-1].cursor_ms / 1000 - (pipedrive.now() - 2)) < 2.5
    assert pages[-1].cursor_ms % 1000 == 0
    (query,) = deals_queries(pipedrive)
    assert query["updated_until"] == rfc3339(pages[-1].cursor_ms / 1000)


def test_a_deal_stamped_at_the_upper_second_is_read_by_the_next_window(pipedrive: FakePipedrive) -> None:
    timer = Timer()
    source = source_for(pipedrive, timer=timer)
    first = read_window(source, delay_ms=0)
    upper_s = first[-1].cursor_ms // 1000
    boundary = pipedrive.add_deal(update_time=upper_s)  # updated_until is exclusive: not in the first window
    assert deals_queries(pipedrive)[0]["updated_until"] == rfc3339(upper_s)
    pipedrive.clock_offset += 2  # the next cycle, a little later, for Pipedrive and for syncd
    timer.moved += 2
    second = read_window(source, since_ms=first[-1].cursor_ms, delay_ms=0)
    assert str(boundary) in seen_ids(second)


def test_malformed_records_are_quarantined_with_id_and_reason(pipedrive: FakePipedrive) -> None:
    t = int(pipedrive.now()) - 60
    stamp = rfc3339(t)
    good = pipedrive.add_deal(update_time=t, title="Good", value=12000.5)
    pipedrive.add_raw_deal({"id": 501, "update_time": "yesterday-ish"})
    pipedrive.add_raw_deal({"id": 502, "update_time": stamp, "value": "12k"})
    pipedrive.add_raw_deal({"id": 503, "update_time": stamp, "title": ["a", "list"]})
    pipedrive.add_raw_deal({"id": 504, "update_time": stamp, "stage_id": {"id": 4}})
    pipedrive.add_raw_deal({"id": 505, "update_time": stamp, "custom_fields": "nope"})
    pipedrive.add_raw_deal({"title": "no id", "update_time": stamp})
    pipedrive.add_raw_deal({"id": 507, "update_time": stamp.replace("T", " ").removesuffix("Z"), "value": 3})
    pages = read_window(source_for(pipedrive))
    assert seen_ids(pages) == {str(good), "507"}, "the v1 space form is accepted, as UTC"
    reasons = {q.record_id: q.reason for page in pages for q in page.quarantined}
    assert set(reasons) == {"501", "502", "503", "504", "505", None}
    assert "not a timestamp" in reasons["501"] and "not a number" in reasons["502"]
    assert "title" in reasons["503"] and "stage_id" in reasons["504"] and "custom_fields" in reasons["505"]
    assert "usable 'id'" in reasons[None]
    deals = {d.id: d for p in pages for d in p.deals}
    assert deals[str(good)].amount == 12000.5 and deals[str(good)].name == "Good"
    assert deals["507"].updated_at_ms == t * 1000


@pytest.mark.parametrize("route", ["deals", "fields"])
@pytest.mark.parametrize("kind", ["malformed_json", "wrong_envelope"])
def test_an_unreadable_page_is_a_transient_error_and_yields_nothing(
    pipedrive: FakePipedrive, kind: str, route: str
) -> None:
    pipedrive.add_deal(update_time=pipedrive.now() - 60)
    pipedrive.inject(kind, times=5, route=route)
    pages: list[Page] = []
    with pytest.raises(TransientError):
        for page in source_for(pipedrive).pages(None, 1000):
            pages.append(page)
    assert pages == []


def test_a_transient_failure_is_retried(pipedrive: FakePipedrive) -> None:
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60)
    pipedrive.inject("502", route="deals")
    pipedrive.inject("wrong_envelope", route="fields")
    assert seen_ids(read_window(source_for(pipedrive))) == {str(deal)}


@pytest.mark.parametrize("retry_after", [True, False])
def test_a_429_is_retried(pipedrive: FakePipedrive, retry_after: bool) -> None:
    pipedrive.send_retry_after = retry_after
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60)
    pipedrive.inject("429", route="deals", retry_after=1)
    assert seen_ids(read_window(source_for(pipedrive))) == {str(deal)}
    assert pipedrive.rate_limited == 0  # injected faults are not counted as throttling
    assert pipedrive.early_requests == 0, "the retry waits for Retry-After, or else for x-ratelimit-reset"


def test_the_burst_limit_headers_are_respected(pipedrive: FakePipedrive) -> None:
    pipedrive.burst_limit = 4  # per rolling 2 s window; 1 dealFields + 5 deals requests need a pause
    t0 = int(pipedrive.now()) - 1000
    ids = [pipedrive.add_deal(update_time=t0 + i) for i in range(450)]
    pages = read_window(source_for(pipedrive, page_size=100))
    assert seen_ids(pages) == {str(i) for i in ids}
    assert pipedrive.rate_limited == 0 and pipedrive.early_requests == 0


# -- the deal fields are kept (issue 12 row 9: Pipedrive charges tokens per call) ---------------------------
def test_idle_cycles_on_one_source_read_the_deal_fields_once(pipedrive: FakePipedrive) -> None:
    for i in range(500):
        pipedrive.add_custom_field(f"Filler {i}")
    tier = pipedrive.add_custom_field("Tier", "enum", ["Enterprise"])  # on the listing's second page
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60, custom={"Tier": "Enterprise"})
    source = source_for(pipedrive)
    first = read_window(source)
    assert [d.values()["tier"] for p in first for d in p.deals if d.id == str(deal)] == ["Enterprise"]
    spent = pipedrive.budget_used
    for _ in range(4):
        read_window(source, since_ms=first[-1].cursor_ms)
    assert field_listings(pipedrive) == (1, 2), "one listing, all its pages, for five cycles"
    assert pipedrive.deals_requests == 5 and all(q["custom_fields"] == tier for q in deals_queries(pipedrive))
    assert pipedrive.budget_used - spent == 4 * COSTS["deals"], "an idle cycle costs one deals listing"


def test_write_backs_reuse_the_kept_fields_and_look_up_a_new_one(pipedrive: FakePipedrive) -> None:
    project = pipedrive.add_custom_field("Asana project")
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60)
    source = source_for(pipedrive)
    read_window(source)
    for url in ("https://app.asana.com/0/1", "https://app.asana.com/0/2"):
        source.write_back(str(deal), "asana_project", url)
    source.write_back(str(deal), "title", "Renamed")  # a standard field the listing has
    assert field_listings(pipedrive) == (1, 1)
    assert pipedrive.deals[deal]["custom_fields"][project] == "https://app.asana.com/0/2"
    assert pipedrive.deals[deal]["title"] == "Renamed"
    later = pipedrive.add_custom_field("Kickoff link")  # created after the listing was read
    source.write_back(str(deal), "kickoff_link", "https://example.com/k")
    assert pipedrive.deals[deal]["custom_fields"][later] == "https://example.com/k"
    assert field_listings(pipedrive) == (2, 2)


def test_a_custom_field_created_later_is_picked_up_from_its_unknown_code(pipedrive: FakePipedrive) -> None:
    t = int(pipedrive.now()) - 60
    deal = pipedrive.add_deal(update_time=t, status="won")
    source = source_for(pipedrive)
    first = read_window(source)
    assert [d.values().get("tier") for p in first for d in p.deals] == [None]
    pipedrive.add_custom_field("Tier", "enum", ["Standard", "Enterprise"])
    pipedrive.update_deal(deal, update_time=t + 30, custom={"Tier": "Enterprise"})
    second = read_window(source, since_ms=first[-1].cursor_ms - 60_000)
    assert [d.values()["tier"] for p in second for d in p.deals] == ["Enterprise"]
    assert field_listings(pipedrive) == (2, 2), "the deals carried a code the kept listing lacked"
    read_window(source, since_ms=second[-1].cursor_ms)
    assert field_listings(pipedrive) == (2, 2)
    assert deals_queries(pipedrive)[-1]["custom_fields"] == pipedrive.field_key("Tier")


def test_the_deal_fields_are_read_again_after_an_hour(pipedrive: FakePipedrive) -> None:
    timer = Timer()
    source = source_for(pipedrive, timer=timer)
    read_window(source)
    timer.moved += 3599
    pipedrive.clock_offset += 3599
    read_window(source)
    assert field_listings(pipedrive) == (1, 1)
    timer.moved += 2
    pipedrive.clock_offset += 2
    read_window(source)
    assert field_listings(pipedrive) == (2, 2)


def test_a_field_setup_the_flows_cannot_use_is_not_kept(pipedrive: FakePipedrive) -> None:
    pipedrive.add_custom_field("Tier")
    pipedrive.add_custom_field("TIER")
    source = source_for(pipedrive)
    with pytest.raises(SourceSetupError):
        read_window(source)
    pipedrive.fields[-1]["field_name"] = "Tier (old)"  # renamed in Pipedrive
    read_window(source)
    assert field_listings(pipedrive) == (2, 2) and deals_queries(pipedrive)[0]["custom_fields"]


# -- the edge's HTML 403 (issue 12 row 12) -----------------------------------------------------------------
def test_an_html_403_from_the_edge_is_retried_not_an_auth_error(pipedrive: FakePipedrive) -> None:
    deal = pipedrive.add_deal(update_time=pipedrive.now() - 60)
    pipedrive.inject("edge_403", route="deals")
    assert seen_ids(read_window(source_for(pipedrive))) == {str(deal)}
    assert pipedrive.deals_requests == 2 and pipedrive.faults_injected == 1


def test_an_edge_403_that_persists_is_a_rate_limit_for_this_cycle(pipedrive: FakePipedrive) -> None:
    pipedrive.inject("edge_403", times=3, route="deals")
    with pytest.raises(RateLimited) as caught:
        read_window(source_for(pipedrive))
    assert not isinstance(caught.value, AuthError) and caught.value.status == 403
    assert EDGE_PAGE.decode() not in str(caught.value), "the page is summed up, not pasted"
    assert "HTML page from Pipedrive's edge" in str(caught.value) and "Access denied" in str(caught.value)
    assert pipedrive.deals_requests == 3


def test_a_json_403_is_still_an_auth_error(pipedrive: FakePipedrive) -> None:
    pipedrive.inject("403", route="deals")
    with pytest.raises(AuthError, match="Request not allowed") as caught:
        read_window(source_for(pipedrive))
    assert caught.value.status == 403 and pipedrive.deals_requests == 1, "not retried"


def test_the_profile_reads_a_403_by_its_body() -> None:
    page = EDGE_PAGE.decode()
    assert PROFILE.is_rate_limit(403, PROFILE.error_text(403, page))
    envelope = {"success": False, "error": "Request not allowed", "error_info": "Please check ..."}
    assert not PROFILE.is_rate_limit(403, PROFILE.error_text(403, envelope))
    assert not PROFILE.is_rate_limit(403, PROFILE.error_text(403, "Forbidden"))
    assert not PROFILE.is_rate_limit(502, PROFILE.error_text(502, "<html><title>502 Bad Gateway</title></html>"))
    assert PROFILE.error_text(403, page).endswith(
        "Access denied | api.pipedrive.com used Cloudflare to restrict access"
    )


def test_timestamps_parse_exactly() -> None:
    assert parse_timestamp_ms("2024-09-13T20:23:03Z") == 1_726_258_983_000
    assert parse_timestamp_ms("2024-09-13T20:23:03.123Z") == 1_726_258_983_123
    assert parse_timestamp_ms("2024-09-13T22:23:03+02:00") == 1_726_258_983_000
    assert parse_timestamp_ms("2024-09-13 20:23:03") == 1_726_258_983_000
    for bad in (
        "2024-13-45T00:00:00Z",
        "2024-09-13",
        "1726258983",
        "",
        None,
        1_726_258_983,
        "2024-09-13T20:23:03+25:00",
    ):
        assert parse_timestamp_ms(bad) is None, bad


def test_friendly_names() -> None:
    assert friendly_name("Tier") == "tier"
    assert friendly_name("Deal Size Band") == "deal_size_band"
    assert friendly_name("  ARR (€) / year ") == "arr_year"


def test_parse_deal_normalises_v2_fields() -> None:
    record = {
        "id": 42,
        "title": "Acme",
        "stage_id": 3,
        "pipeline_id": 1,
        "owner_id": 18,
        "value": 1500,
        "currency": "EUR",
        "expected_close_date": "2024-10-01",
        "update_time": "2024-09-13T20:23:03Z",
        "custom_fields": {},
    }
    deal = parse_deal(record, {"currency", "status"}, {})
    assert (deal.id, deal.name, deal.stage, deal.pipeline, deal.owner) == ("42", "Acme", "3", "1", "18")
    assert (deal.amount, deal.close_date, deal.updated_at_ms) == (1500.0, "2024-10-01", 1_726_258_983_000)
    assert deal.properties == {"currency": "EUR"}
    with pytest.raises(ValueError, match="usable 'id'"):
        parse_deal({**record, "id": True}, (), {})
