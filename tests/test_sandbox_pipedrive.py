"""The fake Pipedrive API v2 (deals), exercised over real HTTP the way a client would see it."""

from __future__ import annotations

import re

import pytest
import requests

from syncd.sandbox.pipedrive import INFO, FakePipedrive, rfc3339

TOKEN = "sandbox-pipedrive-token"
AUTH = {"x-api-token": TOKEN}
DEALS = "/api/v2/deals"
T0 = 1_726_258_983  # 2024-09-13T20:23:03Z; deals are placed in time with update_time=, never by sleeping
STAMP = "2024-09-13T20:23:03Z"


@pytest.fixture
def fake():
    server = FakePipedrive().start()
    yield server
    server.stop()


def get(fake, path=DEALS, *, headers=AUTH, timeout=5, **params):
    return requests.get(fake.url + path, params=params, headers=headers, timeout=timeout)


def patch(fake, deal_id, body, headers=AUTH):
    return requests.patch(f"{fake.url}{DEALS}/{deal_id}", json=body, headers=headers, timeout=5)


def ids(response):
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["data"]]


def failure(response, status, error=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["errorCode"] == status and body["error_info"] == INFO
    if error:
        assert body["error"] == error
    return body


def walk(fake, **params):
    """All pages of a listing; returns (ids, number of pages)."""
    seen, pages, cursor = [], 0, None
    while True:
        body = get(fake, **params, **({"cursor": cursor} if cursor else {})).json()
        seen += [d["id"] for d in body["data"]]
        pages += 1
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return seen, pages


# -- auth ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"x-api-token": "wrong"}, {"Authorization": f"Bearer {TOKEN}"}])
def test_missing_or_wrong_token_is_401(fake, headers):
    body = failure(get(fake, headers=headers), 401, "unauthorized access")
    assert body["error_info"] == "Please check developers.pipedrive.com for more information about Pipedrive API."


def test_token_in_query_string_works_but_is_counted(fake):
    assert get(fake, headers={}, api_token=TOKEN).status_code == 200
    assert get(fake, api_token=TOKEN).status_code == 200
    assert get(fake).status_code == 200
    assert fake.tokens_in_query == 2 and fake.deals_requests == 3


# -- listing -----------------------------------------------------------------------------------------------
def test_deal_items_have_the_v2_shape(fake):
    tier = fake.add_custom_field("Tier", "enum", ["Startup", "Enterprise"])
    won = fake.add_deal(title="Acme", status="won", value=15000, custom={"Tier": "Enterprise"}, update_time=T0)
    deal = get(fake).json()["data"][0]
    assert deal["id"] == won and isinstance(won, int) and deal["title"] == "Acme" and deal["status"] == "won"
    assert deal["value"] == 15000.0 and isinstance(deal["value"], float) and deal["currency"] == "USD"
    assert deal["update_time"] == deal["add_time"] == deal["won_time"] == deal["close_time"] == STAMP
    assert re.fullmatch(r"[0-9a-f]{40}", tier) and deal["custom_fields"] == {tier: fake.option_id("Tier", "Enterprise")}
    assert {"stage_id", "pipeline_id", "owner_id", "person_id", "org_id", "expected_close_date"} <= set(deal)
    assert deal["is_deleted"] is False and deal["lost_time"] is None


def test_cursor_pages_to_the_end_through_ties(fake):
    made = [fake.add_deal(update_time=T0 + i // 10) for i in range(23)]  # runs of ten deals share one second
    seen, pages = walk(fake, sort_by="update_time", sort_direction="asc", limit=5, updated_since=STAMP)
    assert seen == made and pages == 5
    assert walk(fake, limit=500) == (made, 1)
    newest_first = walk(fake, sort_by="update_time", sort_direction="desc", limit=4)[0]
    assert newest_first == made[::-1]  # ties newest id first too


def test_updated_since_is_inclusive_and_updated_until_exclusive(fake):
    fake.add_deal(update_time=T0 - 1)
    tied = [fake.add_deal(update_time=T0) for _ in range(3)]
    later = fake.add_deal(update_time=T0 + 1)
    fake.add_deal(update_time=T0 + 2)
    until = rfc3339(T0 + 2)
    assert ids(get(fake, updated_since=STAMP, updated_until=until, sort_by="update_time")) == [*tied, later]
    assert ids(get(fake, updated_since="2024-09-13T22:23:03+02:00", updated_until=until)) == [*tied, later]
    failure(get(fake, updated_since="2024-09-13 20:23:03"), 400)
    failure(get(fake, updated_since="yesterday"), 400)


def test_a_deal_updated_while_paging_is_seen_again_later(fake):
    first, second, third = (fake.add_deal(update_time=T0 + i) for i in range(3))
    body = get(fake, sort_by="update_time", limit=2).json()
    assert [d["id"] for d in body["data"]] == [first, second]
    fake.update_deal(first, update_time=T0 + 10)
    rest = get(fake, sort_by="update_time", limit=2, cursor=body["additional_data"]["next_cursor"])
    assert ids(rest) == [third, first]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "501"},
        {"limit": "0"},
        {"limit": "ten"},
        {"sort_by": "title"},
        {"sort_direction": "up"},
        {"status": "open,closed"},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJrIjogMX0"},
        {"custom_fields": ",".join(f"{i:040x}" for i in range(16))},
    ],
)
def test_invalid_parameters_are_400(fake, params):
    failure(get(fake, **params), 400)


def test_cursor_belongs_to_its_query(fake):
    for _ in range(3):
        fake.add_deal(update_time=T0)
    cursor = get(fake, limit=1, sort_by="update_time").json()["additional_data"]["next_cursor"]
    failure(get(fake, limit=1, sort_by="id", cursor=cursor), 400, "Invalid cursor")
    assert len(ids(get(fake, limit=2, sort_by="update_time", cursor=cursor))) == 2  # limit may change


def test_status_filter_deleted_and_archived_deals(fake):
    open_, won, lost, gone, shelved = (fake.add_deal(update_time=T0) for _ in range(5))
    fake.update_deal(won, status="won", update_time=T0)
    fake.update_deal(lost, status="lost", update_time=T0)
    fake.delete_deal(gone, update_time=T0)
    fake.archive_deal(shelved, update_time=T0)
    assert ids(get(fake)) == [open_, won, lost]
    assert ids(get(fake, status="deleted")) == [gone]
    assert ids(get(fake, status="won,lost")) == [won, lost]
    assert get(fake, status="deleted").json()["data"][0]["is_deleted"] is True
    failure(get(fake, f"{DEALS}/{shelved}"), 404)
    assert get(fake, f"{DEALS}/{gone}").json()["data"]["status"] == "deleted"


def test_filters_by_ids_and_owner(fake):
    a, b, c = (fake.add_deal(owner_id=owner, update_time=T0) for owner in (7, 8, 7))
    assert ids(get(fake, owner_id=7)) == [a, c]
    assert ids(get(fake, ids=f"{c},{b}")) == [b, c]


def test_raw_deals_come_back_verbatim(fake):
    good = fake.add_deal(update_time=T0)
    odd = {"id": 99, "title": None, "update_time": "not a time", "custom_fields": "oops"}
    fake.add_raw_deal(odd)
    data = get(fake, updated_since=STAMP, sort_by="update_time").json()["data"]
    assert [d["id"] for d in data] == [good, 99] and data[-1] == odd


# -- custom fields ---------------------------------------------------------------------------------------
def test_deal_fields_resolve_custom_keys_and_option_ids(fake):
    tier = fake.add_custom_field("Tier", "enum", ["Startup", "Enterprise"])
    tags = fake.add_custom_field("Tags", "set", ["a", "b", "c"])
    budget = fake.add_custom_field("Budget", "monetary")
    note = fake.add_custom_field("Note")
    deal = fake.add_deal(custom={"Tier": "Enterprise", "Tags": ["a", "c"], "Budget": (2300, "EUR"), "Note": "hi"})
    fields, cursor = [], None
    while True:
        body = get(fake, "/api/v2/dealFields", limit=5, **({"cursor": cursor} if cursor else {})).json()
        fields += body["data"]
        if not (cursor := body["additional_data"]["next_cursor"]):
            break
    by_code = {f["field_code"]: f for f in fields}
    assert by_code["title"]["is_custom_field"] is False and by_code[tier]["field_name"] == "Tier"
    options = {o["label"]: o["id"] for o in by_code[tier]["options"]}
    values = get(fake, f"{DEALS}/{deal}").json()["data"]["custom_fields"]
    assert values[tier] == options["Enterprise"] and by_code[tier]["field_type"] == "enum"
    assert values[tags] == [o["id"] for o in by_code[tags]["options"] if o["label"] in ("a", "c")]
    assert values[budget] == {"value": 2300, "currency": "EUR"} and values[note] == "hi"
    assert ids(get(fake, custom_fields=tier)) == [deal]
    assert get(fake, custom_fields=tier).json()["data"][0]["custom_fields"] == {tier: options["Enterprise"]}
    v1 = get(fake, "/v1/dealFields").json()
    assert {"key": tier, "name": "Tier"}.items() <= next(f for f in v1["data"] if f["key"] == tier).items()
    assert v1["additional_data"]["pagination"]["more_items_in_collection"] is False
    with pytest.raises(ValueError):
        fake.add_deal(custom={"Tier": "Unknown"})


def test_add_time_is_settable_defaults_to_the_first_update_and_sorts(fake):
    old = fake.add_deal(title="old", update_time=T0 + 60, created_at=T0 - 86_400.7)
    new = fake.add_deal(title="new", update_time=T0)
    fake.update_deal(new, update_time=T0 + 120, title="renamed")
    assert patch(fake, new, {"value": 5}).json()["data"]["add_time"] == STAMP  # PATCH leaves it alone
    by_id = {d["id"]: d for d in get(fake).json()["data"]}
    assert by_id[old]["add_time"] == "2024-09-12T20:23:02Z" and by_id[old]["update_time"] == rfc3339(T0 + 60)
    assert by_id[new]["add_time"] == STAMP != by_id[new]["update_time"]
    assert get(fake, f"{DEALS}/{old}").json()["data"]["add_time"] == "2024-09-12T20:23:02Z"
    assert ids(get(fake, sort_by="add_time", sort_direction="desc")) == [new, old]
    failure(patch(fake, new, {"add_time": STAMP}), 400)


# -- PATCH -----------------------------------------------------------------------------------------------
def test_patch_returns_the_deal_and_bumps_update_time(fake):
    tier = fake.add_custom_field("Tier", "enum", ["Startup", "Enterprise"])
    deal = fake.add_deal(title="Acme", update_time=T0)
    before = get(fake).headers["x-daily-requests-left"]
    response = patch(fake, deal, {"status": "won", "custom_fields": {tier: fake.option_id("Tier", "Startup")}})
    assert response.status_code == 200 and response.json()["success"] is True
    data = response.json()["data"]
    assert data["update_time"] > STAMP and data["won_time"] == data["update_time"] == data["close_time"]
    assert data["custom_fields"][tier] == fake.option_id("Tier", "Startup") and data["title"] == "Acme"
    assert ids(get(fake, updated_since=data["update_time"])) == [deal]
    assert int(response.headers["x-daily-requests-left"]) == int(before) - 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"update_time": STAMP}, 400),
        ({"status": "deleted"}, 400),
        ({"custom_fields": {"f" * 40: 1}}, 400),
        ({"custom_fields": {"tier": 999}}, 400),
        ({"custom_fields": {"tier": "Enterprise"}}, 400),  # the API takes option ids, not labels
        (["title"], 400),
    ],
)
def test_patch_validation(fake, body, status):
    tier = fake.add_custom_field("Tier", "enum", ["Enterprise"])
    deal = fake.add_deal(update_time=T0)
    if isinstance(body, dict) and "tier" in body.get("custom_fields", {}):
        body = {"custom_fields": {tier: body["custom_fields"]["tier"]}}
    failure(patch(fake, deal, body), status)
    assert fake.deals[deal]["update_time"] == STAMP


def test_patch_unknown_deal_is_404(fake):
    failure(patch(fake, 12345, {"title": "x"}), 404, "Deal not found")


# -- rate limits -----------------------------------------------------------------------------------------
def test_every_response_has_rate_limit_headers(fake):
    first, second = get(fake), get(fake, "/api/v2/dealFields")
    assert first.headers["x-ratelimit-limit"] == "40" and first.headers["x-ratelimit-remaining"] == "39"
    assert first.headers["x-ratelimit-reset"] == "2" and first.headers["x-daily-requests-left"] == "10000"
    assert second.headers["x-ratelimit-remaining"] == "38"
    rejected = get(fake, limit="0")
    assert rejected.status_code == 400 and rejected.headers["x-ratelimit-remaining"] == "37"


def test_burst_limit_429_and_the_window_rolls(fake):
    fake.burst_limit = 2
    assert get(fake).headers["x-ratelimit-remaining"] == "1"
    assert get(fake).headers["x-ratelimit-remaining"] == "0"
    limited = get(fake)
    body = failure(limited, 429, "Rate limit exceeded")
    assert body["data"] is None and "Retry-After" not in limited.headers
    assert limited.headers["x-ratelimit-remaining"] == "0" and 1 <= int(limited.headers["x-ratelimit-reset"]) <= 2
    assert fake.rate_limited == 1 and fake.early_requests == 1  # sent although remaining was 0
    fake.clock_offset += 2.5
    assert get(fake).status_code == 200 and fake.early_requests == 1


def test_retry_after_is_sent_only_when_switched_on_and_early_requests_are_counted(fake):
    fake.burst_limit, fake.send_retry_after = 1, True
    fake.clock_offset = 10.0
    assert get(fake).status_code == 200
    fake.clock_offset += 5  # the window has rolled: not early
    assert get(fake).status_code == 200 and fake.early_requests == 0
    limited = get(fake)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == limited.headers["x-ratelimit-reset"]
    get(fake)
    assert fake.early_requests == 2
    fake.clock_offset += int(limited.headers["Retry-After"]) + 0.5
    assert get(fake).status_code == 200 and fake.early_requests == 2


def test_penalty_keeps_refusing_after_a_burst_429(fake):
    fake.burst_limit, fake.penalty_seconds = 1, 10.0
    get(fake)
    assert get(fake).headers["x-ratelimit-reset"] == "10"
    fake.clock_offset += 3
    assert get(fake).status_code == 429
    fake.clock_offset += 8
    assert get(fake).status_code == 200 and fake.rate_limited == 2


def test_daily_budget_429_and_reset_at_utc_midnight(fake):
    fake.daily_budget, fake.send_retry_after = 25, True  # a list costs 10 tokens
    fake.clock_offset = (86_400 - fake.now() % 86_400) - 100  # 100 s before midnight UTC
    assert get(fake).status_code == get(fake).status_code == 200
    limited = get(fake)
    failure(limited, 429, "daily request budget exceeded")
    assert 99 <= int(limited.headers["Retry-After"]) <= 101 and fake.budget_used == 20
    fake.clock_offset += 200
    assert get(fake).status_code == 200 and fake.budget_used == 10


# -- faults ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_error_faults(fake, kind, status):
    fake.inject(kind, route="deals")
    failure(get(fake), status)
    assert get(fake).status_code == 200 and fake.faults_injected == 1


def test_502_is_a_cloudflare_html_page(fake):
    fake.inject("502")
    response = get(fake)
    assert response.status_code == 502 and response.headers["Content-Type"] == "text/html"
    assert b"cloudflare" in response.content


def test_edge_403_is_an_html_page_served_before_the_api(fake):
    fake.daily_budget = 10  # one list
    fake.inject("edge_403", times=2, route="deals")
    blocked = get(fake)
    assert blocked.status_code == 403 and blocked.headers["Content-Type"].startswith("text/html")
    assert b"Access denied" in blocked.content and b"Cloudflare" in blocked.content
    assert not any(name.lower().startswith("x-ratelimit") for name in blocked.headers), "the API never saw it"
    assert get(fake, headers={}).status_code == 403, "the edge checks no token"
    assert fake.budget_used == 0 and fake.faults_injected == 2
    assert get(fake).status_code == 200 and fake.budget_used == 10
    fake.inject("edge_403", route="fields")
    assert get(fake).status_code == 429, "a fault for another route does not block this one"


def test_a_json_403_is_the_api_s_own_envelope(fake):
    fake.inject("403", route="deals")
    failure(get(fake), 403, "Request not allowed")
    assert get(fake).status_code == 200


def test_injected_429_with_and_without_retry_after(fake):
    fake.inject("429", retry_after=3)
    plain = get(fake)
    failure(plain, 429, "Rate limit exceeded")
    assert "Retry-After" not in plain.headers and plain.headers["x-ratelimit-reset"] == "3"
    fake.send_retry_after = True
    fake.inject("429", retry_after=3)
    assert get(fake).headers["Retry-After"] == "3"
    fake.clock_offset += 3.5
    assert get(fake).status_code == 200 and fake.rate_limited == 0 and fake.faults_injected == 2


def test_transport_and_body_faults(fake):
    fake.inject("drop", route="deals")
    with pytest.raises(requests.ConnectionError):
        get(fake)
    fake.inject("malformed_json")
    with pytest.raises(ValueError):
        get(fake).json()
    fake.inject("wrong_envelope")
    assert get(fake).json() == {"unexpected": True}
    fake.inject("slow", delay=0.3)
    with pytest.raises(requests.ReadTimeout):
        get(fake, timeout=0.05)
    assert get(fake).status_code == 200 and fake.faults_injected == 4


def test_faults_target_routes_and_apply_runs_the_request(fake):
    deal = fake.add_deal(update_time=T0)
    fake.inject("drop", route="patch", apply=True)
    fake.inject("500", route="fields")
    assert get(fake).status_code == 200
    with pytest.raises(requests.ConnectionError):
        patch(fake, deal, {"title": "Applied"})
    assert fake.deals[deal]["title"] == "Applied"
    failure(get(fake, "/api/v2/dealFields"), 500)
    fake.fault_rate, fake.fault_kinds = 1.0, ["503"]
    failure(get(fake), 503)
    with pytest.raises(ValueError):
        fake.inject("expired_session")
