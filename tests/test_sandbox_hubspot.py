"""The fake HubSpot deals API, exercised over real HTTP the way a client would see it."""

from __future__ import annotations

import email.utils
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from syncd.sandbox.hubspot import FakeHubSpot, iso
from syncd.sandbox.server import Request

TOKEN = "sandbox-hubspot-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEARCH = "/crm/v3/objects/deals/search"
DEALS = "/crm/v3/objects/deals"
T0 = 1_700_000_000.0  # epoch seconds; deals are placed in time with updated_at=, never by sleeping
T0_MS = int(T0 * 1000)


@pytest.fixture
def fake():
    server = FakeHubSpot().start()
    yield server
    # FakeServer.stop() waits out serve_forever's 0.5 s poll; let it do that in the background.
    threading.Thread(target=server.stop, daemon=True).start()


def search(fake, body=None, *, path=SEARCH, headers=AUTH):
    return requests.post(fake.url + path, json=body or {}, headers=headers, timeout=5)


def get(fake, path, params=None, *, headers=AUTH):
    return requests.get(fake.url + path, params=params, headers=headers, timeout=5)


def mod_range(lo_ms, hi_ms):
    return [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(lo_ms)},
        {"propertyName": "hs_lastmodifieddate", "operator": "LTE", "value": str(hi_ms)},
    ]


def ids(response):
    return [r["id"] for r in response.json()["results"]]


def assert_error(response, status, category=None):
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error" and body["message"]
    uuid.UUID(body["correlationId"])
    if category:
        assert body["category"] == category
    return body


# -- auth, routing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_missing_or_wrong_token_is_401(fake, headers):
    fake.add_deal(dealname="Acme")
    body = assert_error(search(fake, headers=headers), 401, "INVALID_AUTHENTICATION")
    assert body["message"].startswith("Authentication credentials not found.")
    assert_error(get(fake, DEALS, headers=headers), 401, "INVALID_AUTHENTICATION")


VERSIONED = ["/crm/objects/2026-03/deals/search", "/crm/objects/2026-09/0-3/search"]


@pytest.mark.parametrize("path", [SEARCH, "/crm/v3/objects/0-3/search", *VERSIONED])
def test_search_is_routed_for_deals_0_3_and_date_versions(fake, path):
    fake.add_deal(dealname="Acme")
    assert search(fake, path=path).json()["total"] == 1


def test_unknown_path_is_hubspot_style_404(fake):
    assert_error(get(fake, "/crm/v3/objects/contacts"), 404)
    assert_error(requests.delete(fake.url + DEALS + "/1", headers=AUTH, timeout=5), 404)


def test_every_response_has_a_date_header_from_the_fake_clock(fake):
    fake.clock_offset = -7200.0
    for response in (search(fake), get(fake, DEALS), search(fake, headers={})):
        sent = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
        assert abs(sent - (time.time() - 7200)) < 5


# -- search: filters, sorts, properties ----------------------------------------------------------------
def test_search_filters_modified_range_with_ms_strings_and_iso(fake):
    a, b, c, d = (fake.add_deal(dealname=n, amount=10, updated_at=T0 + i) for i, n in enumerate("abcd"))
    response = search(fake, {"filterGroups": [{"filters": mod_range(T0_MS + 1000, T0_MS + 2000)}]})
    assert response.status_code == 200 and "X-HubSpot-RateLimit-Remaining" not in response.headers
    body = response.json()
    assert body["total"] == 2 and ids(response) == [b, c] and "paging" not in body
    deal = body["results"][0]
    assert deal["properties"]["amount"] == "10" and deal["properties"]["hs_object_id"] == b
    assert deal["properties"]["hs_lastmodifieddate"] == iso(T0_MS + 1000) == "2023-11-14T22:13:21.000Z"
    assert deal["updatedAt"] == deal["properties"]["hs_lastmodifieddate"] and deal["archived"] is False
    filters = [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": iso(T0_MS + 2000)}]
    assert ids(search(fake, {"filterGroups": [{"filters": filters}]})) == [d]
    between = {"propertyName": "hs_lastmodifieddate", "operator": "BETWEEN"}
    between |= {"value": str(T0_MS), "highValue": str(T0_MS + 1000)}
    assert ids(search(fake, {"filterGroups": [{"filters": [between]}]})) == [a, b]


def test_sorts_default_is_creation_order_and_string_form_is_accepted(fake):
    late = fake.add_deal(updated_at=T0 + 50)
    early = fake.add_deal(updated_at=T0 + 10)
    middle = fake.add_deal(updated_at=T0 + 30)
    asc = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert ids(search(fake)) == [late, early, middle]
    assert ids(search(fake, {"sorts": asc})) == [early, middle, late]
    assert ids(search(fake, {"sorts": ["-hs_lastmodifieddate"]})) == [late, middle, early]
    assert ids(search(fake, {"sorts": ["hs_lastmodifieddate"]})) == [early, middle, late]


def test_equal_timestamps_break_ties_by_id_and_hs_object_id_filter_walks_them(fake):
    before = fake.add_deal(updated_at=T0 - 1)
    same = fake.bulk_add(30, updated_at=T0)
    after = fake.add_deal(updated_at=T0 + 1)
    for direction, expected in [("ASCENDING", [before, *same, after]), ("DESCENDING", [after, *same, before])]:
        body = {"sorts": [{"propertyName": "hs_lastmodifieddate", "direction": direction}], "limit": 100}
        assert ids(search(fake, body)) == expected
    filters = [*mod_range(T0_MS, T0_MS), {"propertyName": "hs_object_id", "operator": "GT", "value": same[9]}]
    body = {"filterGroups": [{"filters": filters}], "sorts": ["hs_object_id"], "limit": 100}
    response = search(fake, body)
    assert ids(response) == same[10:] and response.json()["total"] == 20


def test_other_operators_groups_and_query(fake):
    a = fake.add_deal(dealname="Acme renewal", amount=9, dealstage="closedwon")
    b = fake.add_deal(dealname="Globex", amount=10, dealstage="contractsent", tier="gold")
    c = fake.add_deal(dealname="Initech", amount=None, dealstage="closedlost")

    def where(*filters, groups=None):
        return ids(search(fake, {"filterGroups": groups or [{"filters": list(filters)}]}))

    assert where({"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}) == [a]
    assert where({"propertyName": "dealstage", "operator": "NEQ", "value": "closedwon"}) == [b, c]
    assert where({"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]}) == [a, c]
    assert where({"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedwon"]}) == [b, c]
    assert where({"propertyName": "amount", "operator": "GT", "value": "9"}) == [b]  # numeric, not "10" < "9"
    assert where({"propertyName": "amount", "operator": "HAS_PROPERTY"}) == [a, b]
    assert where({"propertyName": "tier", "operator": "NOT_HAS_PROPERTY"}) == [a, c]
    assert where({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "renew*"}) == [a]
    stages = ("closedlost", "closedwon")
    groups = [{"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": s}]} for s in stages]
    assert where(groups=groups) == [a, c]
    assert ids(search(fake, {"query": "glob"})) == [b]


def test_properties_returned(fake):
    fake.add_deal(dealname="Acme", tier="gold", secret="x")
    plain = fake.add_deal(dealname="Plain")
    default = search(fake).json()["results"][1]["properties"]
    assert set(default) == {"dealname", "amount", "closedate", "pipeline", "dealstage", "createdate"} | {
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    assert default["amount"] is None and default["dealname"] == "Plain"
    body = {"properties": ["dealname", "tier", "no_such_property"], "sorts": ["-hs_object_id"]}
    result = search(fake, body).json()["results"][0]
    assert result["id"] == plain
    assert result["properties"] == {
        "dealname": "Plain",
        "tier": None,  # a property that exists in the portal, unset on this deal
        "hs_object_id": plain,
        "createdate": result["createdAt"],
        "hs_lastmodifieddate": result["updatedAt"],
    }


# -- search: paging and validation ---------------------------------------------------------------------
def test_paging_with_after_until_paging_is_absent(fake):
    created = [fake.add_deal(dealname=f"d{i}") for i in range(25)]
    seen, after, pages = [], None, 0
    while True:
        body = search(fake, {"limit": 10, **({"after": after} if after else {})}).json()
        assert body["total"] == 25
        seen += [r["id"] for r in body["results"]]
        pages += 1
        if "paging" not in body:
            break
        after = body["paging"]["next"]["after"]
        assert after == str(pages * 10) and body["paging"]["next"]["link"] == f"?after={after}"
    assert seen == created and pages == 3


def test_paging_past_10000_results_is_400(fake):
    fake.bulk_add(10_050, updated_at=T0, dealname="bulk")
    last_ok = search(fake, {"limit": 200, "after": "9800"})
    assert last_ok.status_code == 200 and len(ids(last_ok)) == 200
    assert last_ok.json()["total"] == 10_050 and last_ok.json()["paging"]["next"]["after"] == "10000"
    for body in ({"limit": 200, "after": "10000"}, {"limit": 200, "after": 9900}, {"limit": 1, "after": "10000"}):
        response = search(fake, body)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert "10000" in error["errors"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 201},
        {"limit": 0},
        {"after": "abc"},
        {"sorts": ["hs_object_id", "hs_lastmodifieddate"]},
        {"filterGroups": [{"filters": []}] * 6},
        {"filterGroups": [{"filters": [{"propertyName": "a", "operator": "HAS_PROPERTY"}] * 7}]},
        {"filterGroups": [{"filters": [{"propertyName": "a", "operator": "HAS_PROPERTY"}] * 5}] * 4},
        {"filterGroups": [{"filters": [{"propertyName": "a", "operator": "LIKE", "value": "x"}]}]},
        {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": "soon"}]}]},
        {"filterGroups": [{"filters": [{"propertyName": "dealstage", "operator": "EQ"}]}]},
    ],
)
def test_invalid_search_requests_are_400(fake, body):
    assert_error(search(fake, body), 400, "VALIDATION_ERROR")


def test_malformed_json_request_body_is_400(fake):
    response = requests.post(fake.url + SEARCH, data=b"{nope", headers=AUTH, timeout=5)
    assert_error(response, 400, "VALIDATION_ERROR")


def test_paging_through_20k_identical_timestamps_is_fast(fake):
    created = fake.bulk_add(20_000, updated_at=T0)
    filters = mod_range(T0_MS, T0_MS)
    seen, last = [], "0"
    started = time.perf_counter()
    with requests.Session() as session:
        while True:
            page_filters = [*filters, {"propertyName": "hs_object_id", "operator": "GT", "value": last}]
            body = {"filterGroups": [{"filters": page_filters}], "sorts": ["hs_object_id"], "limit": 200}
            response = session.post(fake.url + SEARCH, json=body, headers=AUTH, timeout=5)
            page = ids(response)
            if not page:
                break
            seen += page
            last = page[-1]
    assert seen == created and fake.search_requests == 101
    assert time.perf_counter() - started < 5


def test_search_cost_at_25k_deals():
    fake = FakeHubSpot()  # not started: time handle() itself
    fake.bulk_add(25_000, updated_at=T0, dealname="bulk")
    body = {"filterGroups": [{"filters": mod_range(T0_MS, T0_MS + 1)}], "sorts": ["hs_lastmodifieddate"], "limit": 200}
    request = Request("POST", SEARCH, {}, {"authorization": AUTH["Authorization"]}, json.dumps(body).encode(), 0)
    started = time.perf_counter()
    for _ in range(20):
        assert fake.handle(request).status == 200
    assert (time.perf_counter() - started) / 20 < 0.010  # typically ~2 ms


# -- consistency --------------------------------------------------------------------------------------
def test_index_lag_hides_recent_creates_and_shows_previous_versions(fake):
    now = fake.now()
    old = fake.add_deal(dealname="before", updated_at=now - 100)
    fake.update_deal(old, dealname="after", updated_at=now - 3)
    fresh = fake.add_deal(dealname="fresh", updated_at=now - 2)
    fake.index_lag = 10.0
    response = search(fake, {"properties": ["dealname"]})
    assert ids(response) == [old]
    deal = response.json()["results"][0]
    assert deal["properties"]["dealname"] == "before" and deal["updatedAt"] == iso(round((now - 100) * 1000))
    assert get(fake, f"{DEALS}/{old}", {"properties": "dealname"}).json()["properties"]["dealname"] == "after"
    fake.index_lag = 0.0
    response = search(fake, {"properties": ["dealname"]})
    assert ids(response) == [old, fresh] and response.json()["results"][0]["properties"]["dealname"] == "after"


def test_archived_deals_never_appear_in_search(fake):
    kept, gone = fake.add_deal(), fake.add_deal()
    fake.archive_deal(gone)
    assert ids(search(fake)) == [kept]
    assert_error(get(fake, f"{DEALS}/{gone}"), 404, "OBJECT_NOT_FOUND")
    assert get(fake, f"{DEALS}/{gone}", {"archived": "true"}).json()["archived"] is True


def test_raw_records_are_served_verbatim(fake):
    good = fake.add_deal(dealname="good", updated_at=T0)
    typed = {"id": "77", "properties": {"amount": 5, "hs_lastmodifieddate": iso(T0_MS)}, "archived": False}
    fake.add_raw_deal(typed)
    fake.add_raw_deal({"id": "78", "properties": {"hs_lastmodifieddate": "yesterday-ish"}})
    fake.add_raw_deal({"id": "79"})
    response = search(fake, {"filterGroups": [{"filters": mod_range(T0_MS, T0_MS)}], "sorts": ["hs_object_id"]})
    assert ids(response) == ["77", good, "78", "79"] and response.json()["results"][0] == typed
    nothing = search(fake, {"filterGroups": [{"filters": mod_range(0, 1)}]}).json()
    assert nothing["total"] == 2 and [r["id"] for r in nothing["results"]] == ["78", "79"]


# -- rate limits ---------------------------------------------------------------------------------------
def test_search_rate_limit_is_429_with_secondly_body(fake):
    fake.search_rate_per_second = 2
    responses = [search(fake) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    body = assert_error(responses[2], 429)
    assert body["message"] == "You have reached your secondly limit."
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY" and body["requestId"]
    assert "Retry-After" not in responses[2].headers
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for r in responses for h in r.headers)
    assert fake.rate_limited == 1 and fake.search_requests == 3


def test_burst_limit_and_rate_limit_headers_on_other_endpoints(fake):
    fake.burst_per_10s = 2
    deal = fake.add_deal()
    responses = [get(fake, DEALS), get(fake, f"{DEALS}/{deal}"), get(fake, DEALS)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert [r.headers["X-HubSpot-RateLimit-Daily-Remaining"] for r in responses] == ["249999", "249998", "249997"]
    first = responses[0].headers
    assert first["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert first["X-HubSpot-RateLimit-Max"] == "2" and first["X-HubSpot-RateLimit-Daily"] == "250000"
    body = assert_error(responses[2], 429)
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert fake.rate_limited == 1
    assert search(fake).status_code == 200  # search is exempt from the ten-second bucket


# -- faults -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
def test_server_error_faults(fake, kind):
    fake.inject(kind)
    assert_error(search(fake), int(kind))
    assert search(fake).status_code == 200 and fake.faults_injected == 1


def test_429_fault_uses_ten_secondly_body_but_is_not_a_limit(fake):
    fake.inject("429")
    body = assert_error(search(fake), 429)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and fake.rate_limited == 0 and fake.faults_injected == 1


def test_drop_fault_closes_the_connection(fake):
    fake.inject("drop")
    with pytest.raises(requests.ConnectionError):
        search(fake)
    assert search(fake).status_code == 200


def test_slow_fault_answers_correctly_but_late(fake):
    deal = fake.add_deal()
    fake.inject("slow", delay=0.3)
    started = time.perf_counter()
    response = search(fake)
    assert time.perf_counter() - started >= 0.3 and ids(response) == [deal]


def test_malformed_json_and_wrong_envelope_faults(fake):
    fake.inject("malformed_json")
    fake.inject("wrong_envelope")
    broken = search(fake)
    assert broken.status_code == 200 and broken.content == b'{"results": [ {"id": '
    with pytest.raises(ValueError):
        broken.json()
    assert search(fake).json() == {"unexpected": True}
    assert fake.faults_injected == 2


def test_faults_match_route_and_count(fake):
    deal = fake.add_deal()
    fake.inject("503", times=2, route="get")
    assert search(fake).status_code == 200
    assert [get(fake, f"{DEALS}/{deal}").status_code for _ in range(3)] == [503, 503, 200]


def test_dropped_patch_can_still_be_applied(fake):
    deal = fake.add_deal(updated_at=T0)
    fake.inject("drop", route="patch", apply=True)
    with pytest.raises(requests.ConnectionError):
        requests.patch(f"{fake.url}{DEALS}/{deal}", json={"properties": {"description": "x"}}, headers=AUTH, timeout=5)
    assert fake.deals[deal]["properties"]["description"] == "x"


def test_random_faults_are_seeded():
    def statuses(seed):
        fake = FakeHubSpot(seed=seed)
        fake.fault_rate, fake.fault_kinds = 0.5, ["502", "504"]
        request = Request("POST", SEARCH, {}, {"authorization": AUTH["Authorization"]}, b"{}", 0)
        return [fake.handle(request).status for _ in range(40)], fake.faults_injected

    (first, injected), (again, _) = statuses(7), statuses(7)
    assert first == again and set(first) == {200, 502, 504} and injected == 40 - first.count(200)


# -- list, get, patch ---------------------------------------------------------------------------------
def test_list_pages_with_opaque_after_and_no_total(fake):
    created = [fake.add_deal(dealname=f"d{i}") for i in range(25)]
    fake.archive_deal(created[3])
    seen, params = [], {"limit": 10, "properties": "dealname"}
    while True:
        body = get(fake, DEALS, params).json()
        assert "total" not in body
        seen += [r["id"] for r in body["results"]]
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
        assert not params["after"].isdigit()
    assert seen == created[:3] + created[4:]
    archived = get(fake, DEALS, {"archived": "true"}).json()
    assert [r["id"] for r in archived["results"]] == [created[3]]
    assert_error(get(fake, DEALS, {"limit": 101}), 400, "VALIDATION_ERROR")


def test_get_by_id(fake):
    deal = fake.add_deal(dealname="Acme", amount=1500.5)
    body = get(fake, f"{DEALS}/{deal}", {"properties": "amount"}).json()
    assert body["id"] == deal and body["properties"]["amount"] == "1500.5" and "dealname" not in body["properties"]
    assert_error(get(fake, f"{DEALS}/999999"), 404, "OBJECT_NOT_FOUND")


def test_patch_updates_and_bumps_modification_time(fake):
    fake.declare_property("asana_project_url")
    deal = fake.add_deal(dealname="Acme", updated_at=T0)
    url = f"{fake.url}{DEALS}/{deal}"
    before = time.time()
    response = requests.patch(url, json={"properties": {"asana_project_url": "https://a/1"}}, headers=AUTH, timeout=5)
    assert response.status_code == 200
    props = response.json()["properties"]
    assert props["asana_project_url"] == "https://a/1" and props["dealname"] == "Acme"
    assert props["hs_lastmodifieddate"] == response.json()["updatedAt"]
    modified = fake.deals[deal]["properties"]["hs_lastmodifieddate"]
    assert modified == props["hs_lastmodifieddate"] and modified > iso(int(before * 1000) - 1000)
    body = {"filterGroups": [{"filters": mod_range(int(before * 1000) - 1000, int(time.time() * 1000) + 1000)}]}
    assert ids(search(fake, body)) == [deal]
    assert fake.deals[deal]["properties"]["createdate"] == iso(T0_MS)
    read_only = requests.patch(url, json={"properties": {"hs_lastmodifieddate": "1"}}, headers=AUTH, timeout=5)
    assert_error(read_only, 400, "VALIDATION_ERROR")
    missing = requests.patch(f"{fake.url}{DEALS}/424242", json={"properties": {}}, headers=AUTH, timeout=5)
    assert_error(missing, 404, "OBJECT_NOT_FOUND")


def test_daily_limit_is_429_daily(fake):
    fake.daily_limit = 1
    assert get(fake, DEALS).headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    body = assert_error(search(fake), 429)
    assert body["policyName"] == "DAILY" and body["message"] == "You have reached your daily limit."
    assert fake.rate_limited == 1


def test_daily_429_has_the_documented_body_no_retry_after_and_resets_at_the_portals_midnight(fake):
    fake.time_zone = timezone(timedelta(hours=5, minutes=30))
    local = datetime.fromtimestamp(fake.now(), fake.time_zone)
    fake.clock_offset = (local.replace(hour=23, minute=59, second=0) - local).total_seconds()  # 23:59 portal time
    fake.daily_limit = 1
    assert search(fake).status_code == 200
    limited = search(fake)
    body = assert_error(limited, 429)
    assert {k: body[k] for k in ("message", "errorType", "policyName")} == {
        "message": "You have reached your daily limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "DAILY",
    }
    uuid.UUID(body["requestId"])
    assert "Retry-After" not in limited.headers
    fake.clock_offset += 30
    assert search(fake).status_code == 429  # 23:59:30: still the same day
    fake.clock_offset += 60
    assert search(fake).status_code == 200  # 00:00:30 in the portal's zone: a new day
    assert fake.daily_used == 1


# -- creation time, recycle bin, merges ---------------------------------------------------------------
def delete(fake, deal_id, path=DEALS):
    return requests.delete(f"{fake.url}{path}/{deal_id}", headers=AUTH, timeout=5)


def merge(fake, body, path=DEALS):
    return requests.post(f"{fake.url}{path}/merge", json=body, headers=AUTH, timeout=5)


def test_createdate_is_settable_defaults_to_first_update_and_is_searchable(fake):
    old = fake.add_deal(dealname="old", updated_at=T0 + 60, created_at=T0 - 86_400)
    new = fake.add_deal(dealname="new", updated_at=T0)
    fake.update_deal(new, updated_at=T0 + 120, dealname="renamed")
    fake.add_deal(id=new, updated_at=T0 + 180, dealname="added again")  # keeps the first creation time
    [batch] = fake.bulk_add(1, updated_at=T0 + 5, created_at=T0 + 1)
    got = get(fake, f"{DEALS}/{old}", {"properties": "createdate"}).json()
    assert got["properties"]["createdate"] == iso(T0_MS - 86_400_000) == got["createdAt"] == "2023-11-13T22:13:20.000Z"
    assert fake.deals[new]["properties"]["createdate"] == iso(T0_MS)
    assert fake.deals[batch]["properties"]["createdate"] == iso(T0_MS + 1000)
    since = {"propertyName": "createdate", "operator": "GTE", "value": str(T0_MS)}
    body = {"filterGroups": [{"filters": [since]}], "properties": ["createdate"], "sorts": ["-createdate"]}
    response = search(fake, body)
    assert ids(response) == [batch, new] and response.json()["results"][1]["properties"]["createdate"] == iso(T0_MS)


def test_delete_moves_the_deal_to_the_recycle_bin_with_204(fake):
    kept, gone = fake.add_deal(dealname="kept"), fake.add_deal(dealname="gone")
    response = delete(fake, gone)
    assert response.status_code == 204 and response.content == b""
    assert ids(search(fake)) == [kept]
    assert_error(get(fake, f"{DEALS}/{gone}"), 404, "OBJECT_NOT_FOUND")
    binned = get(fake, f"{DEALS}/{gone}", {"archived": "true"}).json()
    assert binned["archived"] is True and binned["archivedAt"] and binned["properties"]["dealname"] == "gone"
    assert [r["id"] for r in get(fake, DEALS, {"archived": "true"}).json()["results"]] == [gone]
    assert_error(delete(fake, gone), 404, "OBJECT_NOT_FOUND")
    assert_error(delete(fake, "424242", path="/crm/v3/objects/0-3"), 404, "OBJECT_NOT_FOUND")
    fake.inject("503", route="delete")
    assert delete(fake, kept).status_code == 503 and ids(search(fake)) == [kept]


def test_restored_deal_keeps_id_and_createdate_and_is_modified_now(fake):
    deal = fake.add_deal(dealname="Acme", updated_at=T0, created_at=T0 - 10)
    fake.archive_deal(deal)
    window = {"filterGroups": [{"filters": mod_range(T0_MS + 50_000, T0_MS + 70_000)}]}
    assert ids(search(fake, window)) == []
    restored = fake.restore_deal(deal, restored_at=T0 + 60)
    assert restored["archived"] is False and "archivedAt" not in restored
    found = search(fake, window).json()["results"]
    assert [r["id"] for r in found] == [deal]
    assert found[0]["properties"]["createdate"] == iso(T0_MS - 10_000)
    assert found[0]["properties"]["hs_lastmodifieddate"] == iso(T0_MS + 60_000) == found[0]["updatedAt"]
    assert get(fake, f"{DEALS}/{deal}").json()["archived"] is False
    with pytest.raises(ValueError, match="not in the recycle bin"):
        fake.restore_deal(deal)
    before = time.time()
    fake.archive_deal(deal)
    fake.restore_deal(deal)  # default: now
    assert fake.deals[deal]["properties"]["hs_lastmodifieddate"] >= iso(int(before * 1000))


def test_merge_creates_a_new_deal_that_lists_the_merged_ids(fake):
    primary = fake.add_deal(dealname="Acme", amount=100, updated_at=T0, created_at=T0 - 500)
    other = fake.add_deal(dealname="Acme (dup)", amount=50, tier="gold", updated_at=T0 + 1)
    bystander = fake.add_deal(dealname="Globex", updated_at=T0 + 2)
    before = time.time()
    response = merge(fake, {"primaryObjectId": primary, "objectIdToMerge": other})
    assert response.status_code == 200
    survivor = response.json()
    new = survivor["id"]
    assert new not in (primary, other) and survivor["properties"]["hs_object_id"] == new
    assert survivor["properties"]["hs_merged_object_ids"] == f"{primary};{other}"
    assert survivor["properties"]["createdate"] == iso(T0_MS - 500_000)  # (guess) the primary's
    assert survivor["properties"]["hs_lastmodifieddate"] >= iso(int(before * 1000))
    props = get(fake, f"{DEALS}/{new}", {"properties": "dealname,amount,tier"}).json()["properties"]
    assert (props["dealname"], props["amount"], props["tier"]) == ("Acme", "100", "gold")
    assert ids(search(fake, {"sorts": ["hs_object_id"]})) == [bystander, new]
    for merged_away in (primary, other):  # GET by an old id answers with the deal it went into
        body = get(fake, f"{DEALS}/{merged_away}", {"properties": "hs_merged_object_ids"}).json()
        assert body["id"] == new and body["properties"]["hs_merged_object_ids"] == f"{primary};{other}"
    assert [r["id"] for r in get(fake, DEALS).json()["results"]] == [bystander, new]
    assert fake.merged_into == {primary: new, other: new}
    again = fake.merge_deals(bystander, primary)  # an old id stands for its survivor; the list accumulates
    assert fake.merged_into == {primary: again, other: again, new: again, bystander: again}
    merged = get(fake, f"{DEALS}/{other}", {"properties": "hs_merged_object_ids"}).json()["properties"]
    assert merged["hs_merged_object_ids"].split(";") == [primary, other, bystander, new]


def test_merge_can_keep_the_primary_id(fake):
    fake.merge_keeps_primary_id = True
    primary = fake.add_deal(dealname="Acme", updated_at=T0, created_at=T0 - 5)
    other = fake.add_deal(dealname="dup", description="from the dup", updated_at=T0 + 1)
    assert fake.merge_deals(primary, other, merged_at=T0 + 30) == primary
    body = get(fake, f"{DEALS}/{other}", {"properties": "dealname,description,hs_merged_object_ids"}).json()
    assert body["id"] == primary and body["properties"]["hs_merged_object_ids"] == other
    assert (body["properties"]["dealname"], body["properties"]["description"]) == ("Acme", "from the dup")
    assert body["properties"]["createdate"] == iso(T0_MS - 5000)
    assert body["properties"]["hs_lastmodifieddate"] == iso(T0_MS + 30_000)
    assert ids(search(fake)) == [primary]


def test_merge_rejects_bad_requests(fake):
    a, b = fake.add_deal(), fake.add_deal()
    assert_error(merge(fake, {"primaryObjectId": a}), 400, "VALIDATION_ERROR")
    assert_error(merge(fake, {"primaryObjectId": a, "objectIdToMerge": a}), 400, "VALIDATION_ERROR")
    assert_error(merge(fake, {"primaryObjectId": a, "objectIdToMerge": "424242"}), 404, "OBJECT_NOT_FOUND")
    fake.archive_deal(b)
    assert_error(merge(fake, {"primaryObjectId": a, "objectIdToMerge": b}), 404, "OBJECT_NOT_FOUND")
    c = fake.add_deal()
    fake.inject("500", route="merge")
    assert merge(fake, {"primaryObjectId": a, "objectIdToMerge": c}).status_code == 500 and not fake.merged_into
    response = merge(fake, {"primaryObjectId": a, "objectIdToMerge": c}, path="/crm/v3/objects/0-3")
    assert response.status_code == 200 and fake.merged_into == {a: response.json()["id"], c: response.json()["id"]}
    described = {"properties": {"description": "x"}}
    patched = requests.patch(f"{fake.url}{DEALS}/{a}", json=described, headers=AUTH, timeout=5)
    assert patched.json()["id"] == response.json()["id"] and patched.json()["properties"]["description"] == "x"
    read_only = {"properties": {"hs_merged_object_ids": "1"}}
    assert_error(requests.patch(f"{fake.url}{DEALS}/{a}", json=read_only, headers=AUTH, timeout=5), 400)


def test_a_patch_of_a_property_that_does_not_exist_is_a_400(fake):
    deal = fake.add_deal(dealname="Acme", updated_at=T0)
    url = f"{fake.url}{DEALS}/{deal}"
    response = requests.patch(url, json={"properties": {"asana_projct_url": "x"}}, headers=AUTH, timeout=5)
    assert response.status_code == 400 and response.json()["category"] == "VALIDATION_ERROR"
    assert "PROPERTY_DOESNT_EXIST" in response.json()["message"] and "asana_projct_url" in response.json()["message"]
    assert "asana_projct_url" not in fake.deals[deal]["properties"]


def test_account_details_and_property_definitions(fake):
    fake.declare_property("tier", "enumeration", ("Enterprise", "Growth"))
    details = requests.get(f"{fake.url}/account-info/v3/details", headers=AUTH, timeout=5).json()
    assert details["timeZone"] == "America/New_York" and details["utcOffset"] in ("-05:00", "-04:00")
    fake.time_zone = timezone(timedelta(hours=5, minutes=30))
    details = requests.get(f"{fake.url}/account-info/v3/details", headers=AUTH, timeout=5).json()
    assert details["utcOffsetMilliseconds"] == 19_800_000 and details["utcOffset"] == "+05:30"
    results = requests.get(f"{fake.url}/crm/v3/properties/deals", headers=AUTH, timeout=5).json()["results"]
    by_name = {r["name"]: r for r in results}
    assert by_name["hs_is_closed_won"]["type"] == "bool" and by_name["closedate"]["type"] == "datetime"
    assert [o["value"] for o in by_name["tier"]["options"]] == ["Enterprise", "Growth"]
    assert by_name["hs_object_id"]["modificationMetadata"]["readOnlyValue"] is True
    assert requests.get(f"{fake.url}/crm/v3/properties/deals", timeout=5).status_code == 401
