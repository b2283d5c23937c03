"""The fake Salesforce REST API (Opportunities), exercised over real HTTP the way a client would see it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
import requests

from syncd.sandbox.salesforce import FakeSalesforce, sf_datetime

TOKEN_PATH = "/services/oauth2/token"
QUERY = "/services/data/v60.0/query"
OPP = "/services/data/v60.0/sobjects/Opportunity/"
CREDENTIALS = {
    "grant_type": "refresh_token",
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "refresh_token": "sandbox-refresh-token",
}
T0 = 1_726_258_983.0  # 2024-09-13T20:23:03Z; records are placed in time with modstamp=, never by sleeping
SELECT = "SELECT Id, Name, StageName, Amount, IsWon, CloseDate, Account.Name, SystemModstamp FROM Opportunity"
WINDOW = f"{SELECT} WHERE SystemModstamp >= %s AND SystemModstamp <= %s ORDER BY SystemModstamp, Id"


@pytest.fixture
def fake():
    server = FakeSalesforce().start()
    server.rotate_refresh_token = False  # these tests log in many times with one token; rotation has its own test
    yield server
    server.stop()


def refresh(fake, **overrides):
    return requests.post(fake.url + TOKEN_PATH, data={**CREDENTIALS, **overrides}, timeout=5)


@pytest.fixture
def auth(fake):
    return {"Authorization": "Bearer " + refresh(fake).json()["access_token"]}


def query(fake, auth, soql, *, batch=None, timeout=5):
    headers = {**auth, **({"Sforce-Query-Options": f"batchSize={batch}"} if batch else {})}
    return requests.get(fake.url + QUERY, params={"q": soql}, headers=headers, timeout=timeout)


def ids(response):
    return [r["Id"] for r in response.json()["records"]]


def error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body[0]["errorCode"] == code
    return body[0]["message"]


# -- OAuth refresh-token flow --------------------------------------------------------------------------
def test_refresh_returns_documented_fields_and_a_new_token_each_time(fake):
    first, second = refresh(fake), refresh(fake)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
    assert body["instance_url"] == fake.url and body["token_type"] == "Bearer" and body["issued_at"].isdigit()
    signed = hmac.new(b"sandbox-client-secret", (body["id"] + body["issued_at"]).encode(), hashlib.sha256)
    assert base64.b64decode(body["signature"]) == signed.digest()
    assert second.json()["access_token"] != body["access_token"] and fake.token_requests == 2
    for token in (body["access_token"], second.json()["access_token"]):  # both sessions stay valid
        assert query(fake, {"Authorization": f"Bearer {token}"}, "SELECT Id FROM Opportunity").status_code == 200


@pytest.mark.parametrize(
    ("override", "code", "description"),
    [
        ({"client_id": "nope"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "nope"}, "invalid_client", "invalid client credentials"),
        ({"refresh_token": "revoked"}, "invalid_grant", "expired access/refresh token"),
        ({"grant_type": "password"}, "unsupported_grant_type", "grant type not supported"),
    ],
)
def test_bad_credentials_are_oauth_400s(fake, override, code, description):
    response = refresh(fake, **override)
    assert response.status_code == 400
    assert response.json() == {"error": code, "error_description": description}


def test_rotation_is_on_by_default_and_retires_the_old_token():
    assert FakeSalesforce().rotate_refresh_token


def test_rotation_issues_a_new_refresh_token_and_retires_the_old_one(fake):
    fake.rotate_refresh_token = True
    body = refresh(fake).json()
    assert body["refresh_token"] != CREDENTIALS["refresh_token"]
    assert refresh(fake).json()["error"] == "invalid_grant"
    assert refresh(fake, refresh_token=body["refresh_token"]).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer forged"}, {"Authorization": "forged"}])
def test_missing_or_unknown_session_is_401_invalid_session_id(fake, headers):
    assert error(query(fake, headers, "SELECT Id FROM Opportunity"), 401, "INVALID_SESSION_ID") == (
        "Session expired or invalid"
    )
    assert fake.api_used == 0


def test_unknown_routes_and_newer_api_versions_are_404(fake, auth):
    def at(path):
        return requests.get(fake.url + path, params={"q": "SELECT Id FROM Opportunity"}, headers=auth, timeout=5)

    for path in ("/services/data/v61.0/query", "/services/data/v60.0/sobjects/Account/001", OPP + "x"):
        error(at(path), 404, "NOT_FOUND")
    assert at("/services/data/v58.0/query").status_code == 200


def test_expire_tokens_forces_a_refresh(fake, auth):
    assert query(fake, auth, "SELECT Id FROM Opportunity").status_code == 200
    fake.expire_tokens()
    error(query(fake, auth, "SELECT Id FROM Opportunity"), 401, "INVALID_SESSION_ID")
    fresh = {"Authorization": "Bearer " + refresh(fake).json()["access_token"]}
    assert query(fake, fresh, "SELECT Id FROM Opportunity").status_code == 200


# -- query: shape, filters, ties, field errors ---------------------------------------------------------
def test_records_have_salesforce_shape(fake, auth):
    won = fake.add_opportunity(Name="Acme", StageName="Closed Won", Amount=15000, Account="Acme Corp", modstamp=T0)
    fake.add_opportunity(Name="Bare", CloseDate="2024-09-30", modstamp=T0 + 1, Tier__c="Enterprise")
    soql = SELECT.replace(" FROM", ", Owner.Name, Tier__c FROM") + " ORDER BY SystemModstamp"
    response = query(fake, auth, soql)
    assert response.status_code == 200 and response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    body = response.json()
    assert body["totalSize"] == 2 and body["done"] is True and "nextRecordsUrl" not in body
    first, second = body["records"]
    assert first["attributes"] == {"type": "Opportunity", "url": f"/services/data/v60.0/sobjects/Opportunity/{won}"}
    assert re.fullmatch(r"006\w{15}", won) and first["Id"] == won and first["IsWon"] is True
    assert first["Amount"] == 15000.0 and isinstance(first["Amount"], float)
    assert first["SystemModstamp"] == "2024-09-13T20:23:03.000+0000"
    assert first["Account"]["Name"] == "Acme Corp" and first["Account"]["attributes"]["type"] == "Account"
    assert first["Owner"]["Name"] == "Sandbox User" and first["Tier__c"] is None
    assert second["Amount"] is None and second["IsWon"] is False and second["Account"] is None
    assert second["CloseDate"] == "2024-09-30" and second["Tier__c"] == "Enterprise"
    assert list(first)[:4] == ["attributes", "Id", "Name", "StageName"]  # SELECT order


def test_modstamps_have_second_precision(fake, auth):
    fake.add_opportunity(modstamp=T0 + 0.789)
    stamp = query(fake, auth, "SELECT SystemModstamp, LastModifiedDate FROM Opportunity").json()["records"][0]
    assert stamp["SystemModstamp"] == stamp["LastModifiedDate"] == sf_datetime(int(T0) * 1000)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("2024-09-13T20:23:03Z", "2024-09-13T20:23:04Z"),
        ("2024-09-13T20:23:03.000Z", "2024-09-13T20:23:04.000+00:00"),
        ("2024-09-13T22:23:03+02:00", "2024-09-13T16:23:04-04:00"),
        ("2024-09-13T20:23:03.000+0000", "2024-09-13T20:23:04.000+0000"),
    ],
)
def test_time_window_is_inclusive_with_unquoted_literals_in_any_zone(fake, auth, low, high):
    fake.add_opportunity(modstamp=T0 - 1)
    tied = [fake.add_opportunity(modstamp=T0) for _ in range(5)]
    later = fake.add_opportunity(modstamp=T0 + 1)
    fake.add_opportunity(modstamp=T0 + 2)
    assert ids(query(fake, auth, WINDOW % (low, high))) == [*tied, later]


def test_ties_page_by_id_with_and_or_and_parentheses(fake, auth):
    tied = [fake.add_opportunity(modstamp=T0) for _ in range(4)]
    later = fake.add_opportunity(modstamp=T0 + 5)
    stamp = "2024-09-13T20:23:03Z"
    soql = f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {stamp} AND Id > '{tied[1]}' ORDER BY Id"
    assert ids(query(fake, auth, soql)) == [*tied[2:], later]
    keyset = f"(SystemModstamp > {stamp}) OR (SystemModstamp = {stamp} AND Id > '{tied[2]}')"
    soql = f"SELECT Id FROM Opportunity WHERE {keyset} ORDER BY SystemModstamp DESC, Id DESC"
    assert ids(query(fake, auth, soql)) == [later, tied[3]]
    soql = "select id from opportunity where isWon = false and amount = null limit 2"
    assert ids(query(fake, auth, soql)) == tied[:2]


def test_field_names_are_case_insensitive_and_answered_canonically(fake, auth):
    fake.add_opportunity(StageName="Closed Won", Amount=20000)
    soql = "select id, stagename, account.name from OPPORTUNITY where stagename = 'Closed Won' and amount > 10000"
    record = query(fake, auth, soql).json()["records"][0]
    assert list(record) == ["attributes", "Id", "StageName", "Account"]


@pytest.mark.parametrize(
    ("soql", "code", "text"),
    [
        ("SELECT Id, Foo__c FROM Opportunity", "INVALID_FIELD", "No such column 'Foo__c' on entity 'Opportunity'"),
        ("SELECT Id FROM Opportunity WHERE Foo__c = 'x'", "INVALID_FIELD", "No such column 'Foo__c'"),
        ("SELECT Account.Foo FROM Opportunity", "INVALID_FIELD", "No such column 'Foo' on entity 'Account'"),
        ("SELECT Acct.Name FROM Opportunity", "INVALID_FIELD", "Didn't understand relationship 'Acct'"),
        (
            "SELECT Id FROM Opportunity WHERE SystemModstamp >= '2024-01-01T00:00:00Z'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Opportunity WHERE SystemModstamp >= 2024-01-01T00:00:00 00:00",  # '+' sent unencoded
            "MALFORMED_QUERY",
            "no viable alternative at character ' '",
        ),
        ("SELECT Id FROM Opportunity WHERE SystemModstamp >= 2024-01-01T00:00:00", "MALFORMED_QUERY", "viable"),
        ("SELECT FROM Opportunity", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
        ("SELECT Id FROM Opportunity ORDER SystemModstamp", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Opportunity LIMIT ten", "MALFORMED_QUERY", "unexpected token: 'ten'"),
        ("SELECT Id FROM Account", "INVALID_TYPE", "sObject type 'Account' is not supported"),
        ("", "MALFORMED_QUERY", "A query string has to be specified"),
    ],
)
def test_query_errors_are_typed_400s(fake, auth, soql, code, text):
    response = query(fake, auth, soql)
    assert text in error(response, 400, code)
    assert "Sforce-Limit-Info" in response.headers
    if code != "MALFORMED_QUERY" or soql:
        assert "ERROR at Row:1:Column:" in response.json()[0]["message"]


def test_raw_records_come_back_verbatim_and_unparseable_stamps_match_everything(fake, auth):
    good = fake.add_opportunity(modstamp=T0)
    odd = {"attributes": {"type": "Opportunity"}, "Id": "0068d0000000099AAA", "SystemModstamp": "garbage"}
    fake.add_raw_record(odd)
    within = fake.add_raw_record({"Id": "0068d0000000098AAA", "SystemModstamp": "2024-09-13T20:23:03.000+0000"})
    records = query(fake, auth, WINDOW % ("2024-09-13T20:23:03Z", "2024-09-13T20:23:03Z")).json()["records"]
    assert [r["Id"] for r in records] == [good, within, odd["Id"]] and records[-1] == odd


# -- paging --------------------------------------------------------------------------------------------
def test_next_records_url_pages_to_the_end_with_the_requested_batch_size(fake, auth):
    made = [fake.add_opportunity(modstamp=T0 + i // 100) for i in range(450)]
    soql = "SELECT Id FROM Opportunity ORDER BY SystemModstamp, Id"
    response, seen, sizes = query(fake, auth, soql, batch=200), [], []
    while True:
        body = response.json()
        assert body["totalSize"] == 450
        seen += ids(response)
        sizes.append(len(body["records"]))
        if body["done"]:
            assert "nextRecordsUrl" not in body
            break
        assert re.fullmatch(r"/services/data/v60\.0/query/01g\w{15}-\d+", body["nextRecordsUrl"])
        response = requests.get(fake.url + body["nextRecordsUrl"], headers=auth, timeout=5)
    assert seen == made and sizes == [200, 200, 50] and fake.query_requests == 3 and fake.api_used == 3


def test_batch_size_defaults_to_2000_is_clamped_and_may_be_smaller_than_asked(fake, auth):
    for _ in range(2001):
        fake.add_opportunity(modstamp=T0)
    assert len(query(fake, auth, "SELECT Id FROM Opportunity").json()["records"]) == 2000
    assert len(query(fake, auth, "SELECT Id FROM Opportunity", batch=5).json()["records"]) == 200
    assert len(query(fake, auth, "SELECT Id FROM Opportunity", batch=9999).json()["records"]) == 2000
    fake.batch_cap = 150
    assert len(query(fake, auth, "SELECT Id FROM Opportunity", batch=500).json()["records"]) == 150
    body = query(fake, auth, "SELECT Id FROM Opportunity LIMIT 3").json()
    assert body["totalSize"] == 3 and body["done"] is True


def test_results_are_a_snapshot_and_locators_expire(fake, auth):
    for _ in range(250):
        fake.add_opportunity(modstamp=T0)
    first = query(fake, auth, "SELECT Id, Name FROM Opportunity", batch=200).json()
    fake.update_opportunity(first["records"][-1]["Id"], Name="Renamed")
    fake.add_opportunity(modstamp=T0)
    more = requests.get(fake.url + first["nextRecordsUrl"], headers=auth, timeout=5).json()
    assert more["totalSize"] == 250 and len(more["records"]) == 50 and more["done"] is True
    fake.clock_offset = 2 * 86_400 + 1
    expired = requests.get(fake.url + first["nextRecordsUrl"], headers=auth, timeout=5)
    assert error(expired, 400, "INVALID_QUERY_LOCATOR") == "invalid query locator"
    fake.clock_offset = 0
    second = query(fake, auth, "SELECT Id FROM Opportunity", batch=200).json()
    fake.expire_locators()
    error(requests.get(fake.url + second["nextRecordsUrl"], headers=auth, timeout=5), 400, "INVALID_QUERY_LOCATOR")


# -- limits ----------------------------------------------------------------------------------------------
def test_every_api_response_reports_usage_and_exhaustion_is_a_403(fake, auth):
    fake.daily_limit = 2
    assert query(fake, auth, "SELECT Id FROM Opportunity").headers["Sforce-Limit-Info"] == "api-usage=1/2"
    assert query(fake, auth, "SELECT Nope FROM Opportunity").headers["Sforce-Limit-Info"] == "api-usage=2/2"
    limited = query(fake, auth, "SELECT Id FROM Opportunity")
    assert error(limited, 403, "REQUEST_LIMIT_EXCEEDED") == "TotalRequests Limit exceeded."
    assert limited.headers["Sforce-Limit-Info"] == "api-usage=2/2" and "Retry-After" not in limited.headers
    assert fake.rate_limited == 1 and fake.api_used == 2
    assert refresh(fake).status_code == 200  # the token endpoint is not an API call


def test_the_two_request_limits_say_which_limit_in_the_message(fake, auth):
    fake.inject("request_limit", route="query")
    fake.inject("concurrent_limit", route="query")
    total, concurrent = (query(fake, auth, "SELECT Id FROM Opportunity") for _ in range(2))
    assert error(total, 403, "REQUEST_LIMIT_EXCEEDED") == "TotalRequests Limit exceeded."
    assert error(concurrent, 403, "REQUEST_LIMIT_EXCEEDED").startswith("ConcurrentRequests")
    assert "Retry-After" not in total.headers and "Retry-After" not in concurrent.headers


# -- PATCH -----------------------------------------------------------------------------------------------
def test_patch_is_204_and_bumps_modstamps(fake, auth):
    opp = fake.add_opportunity(Name="Acme", modstamp=T0)
    fake.add_field("Asana_Project__c")
    fake.clock_offset = 3600.0
    changes = {"StageName": "Closed Won", "Asana_Project__c": "x"}
    response = requests.patch(fake.url + OPP + opp, json=changes, headers=auth, timeout=5)
    assert response.status_code == 204 and response.content == b"" and "Sforce-Limit-Info" in response.headers
    soql = "SELECT IsWon, Asana_Project__c, SystemModstamp, LastModifiedDate FROM Opportunity"
    record = query(fake, auth, soql).json()["records"][0]
    assert record["IsWon"] is True and record["Asana_Project__c"] == "x"
    assert record["SystemModstamp"] == record["LastModifiedDate"] > sf_datetime(int(T0 + 3000) * 1000)
    assert requests.patch(fake.url + OPP + opp[:15], json={"Amount": 5}, headers=auth, timeout=5).status_code == 204


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("{opp}", {"Foo__c": 1}, 400, "INVALID_FIELD"),
        ("{opp}", {"IsWon": True}, 400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ("{opp}", ["not", "an", "object"], 400, "JSON_PARSER_ERROR"),
        ("0068d0000000777AAA", {"Name": "x"}, 404, "NOT_FOUND"),
    ],
)
def test_patch_errors(fake, auth, path, body, status, code):
    opp = fake.add_opportunity(modstamp=T0)
    response = requests.patch(fake.url + OPP + path.format(opp=opp), json=body, headers=auth, timeout=5)
    error(response, status, code)
    assert fake.opportunities[opp]["SystemModstamp"] == int(T0) * 1000


def test_automation_bumps_system_modstamp_only(fake, auth):
    opp = fake.add_opportunity(modstamp=T0)
    fake.update_opportunity(opp, modstamp=T0 + 60, system_only=True, Probability=50)
    record = query(fake, auth, "SELECT SystemModstamp, LastModifiedDate FROM Opportunity").json()["records"][0]
    assert record["SystemModstamp"] == "2024-09-13T20:24:03.000+0000"
    assert record["LastModifiedDate"] == "2024-09-13T20:23:03.000+0000"


# -- faults ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 500, "UNKNOWN_EXCEPTION"),
        ("503", 503, "SERVER_UNAVAILABLE"),
        ("request_limit", 403, "REQUEST_LIMIT_EXCEEDED"),
        ("concurrent_limit", 403, "REQUEST_LIMIT_EXCEEDED"),
        ("expired_session", 401, "INVALID_SESSION_ID"),
    ],
)
def test_error_faults(fake, auth, kind, status, code):
    fake.inject(kind, route="query")
    error(query(fake, auth, "SELECT Id FROM Opportunity"), status, code)
    after = query(fake, auth, "SELECT Id FROM Opportunity")
    assert after.status_code == (401 if kind == "expired_session" else 200)  # an expired session stays expired
    assert fake.faults_injected == 1


def test_transport_and_body_faults(fake, auth):
    fake.inject("drop", route="query")
    with pytest.raises(requests.ConnectionError):
        query(fake, auth, "SELECT Id FROM Opportunity")
    fake.inject("malformed_json")
    with pytest.raises(ValueError):
        query(fake, auth, "SELECT Id FROM Opportunity").json()
    fake.inject("wrong_envelope")
    assert query(fake, auth, "SELECT Id FROM Opportunity").json() == {"unexpected": True}
    fake.inject("slow", delay=0.3)
    with pytest.raises(requests.ReadTimeout):
        query(fake, auth, "SELECT Id FROM Opportunity", timeout=0.05)
    assert fake.faults_injected == 4 and query(fake, auth, "SELECT Id FROM Opportunity").status_code == 200


def test_faults_target_routes_and_apply_runs_the_request(fake, auth):
    opp = fake.add_opportunity(modstamp=T0)
    fake.inject("drop", route="patch", apply=True)
    fake.inject("500", route="token")
    assert query(fake, auth, "SELECT Id FROM Opportunity").status_code == 200  # neither fault is for queries
    with pytest.raises(requests.ConnectionError):
        requests.patch(fake.url + OPP + opp, json={"Name": "Applied"}, headers=auth, timeout=5)
    assert fake.opportunities[opp]["Name"] == "Applied"
    error(refresh(fake), 500, "UNKNOWN_EXCEPTION")
    assert refresh(fake).status_code == 200
    fake.fault_rate, fake.fault_kinds = 1.0, ["503"]
    error(query(fake, auth, "SELECT Id FROM Opportunity"), 503, "SERVER_UNAVAILABLE")
    with pytest.raises(ValueError):
        fake.inject("429")


# -- CreatedDate, recycle bin --------------------------------------------------------------------------
def test_created_date_is_settable_defaults_to_the_first_modification_and_filters(fake, auth):
    old = fake.add_opportunity(Name="old", modstamp=T0 + 60, created_at=T0 - 86_400)
    new = fake.add_opportunity(Name="new", modstamp=T0)
    iso = fake.add_opportunity(Name="iso", modstamp=T0 + 5, created_at="2024-09-13T20:23:04Z")
    fake.update_opportunity(new, modstamp=T0 + 120, StageName="Closed Won")
    records = query(fake, auth, "SELECT Id, CreatedDate, LastModifiedDate FROM Opportunity ORDER BY CreatedDate")
    by_id = {r["Id"]: r for r in records.json()["records"]}
    assert list(by_id) == [old, new, iso]
    assert by_id[old]["CreatedDate"] == "2024-09-12T20:23:03.000+0000"
    assert by_id[new]["CreatedDate"] == sf_datetime(int(T0) * 1000) != by_id[new]["LastModifiedDate"]
    assert by_id[iso]["CreatedDate"] == sf_datetime(int(T0 + 1) * 1000)
    soql = "SELECT Id FROM Opportunity WHERE CreatedDate >= 2024-09-13T20:23:03Z ORDER BY Id"
    assert ids(query(fake, auth, soql)) == [new, iso]
    response = requests.patch(
        fake.url + OPP + new, json={"CreatedDate": "2020-01-01T00:00:00Z"}, headers=auth, timeout=5
    )
    error(response, 400, "INVALID_FIELD_FOR_INSERT_UPDATE")


def test_deleted_opportunities_leave_query_but_stay_in_query_all(fake, auth):
    kept = fake.add_opportunity(Name="kept", modstamp=T0)
    gone = fake.add_opportunity(Name="gone", modstamp=T0)
    for _ in range(3):
        fake.add_opportunity(modstamp=T0 - 10)
    fake.delete_opportunity(gone, modstamp=T0 + 30)
    soql = "SELECT Id, IsDeleted, SystemModstamp, LastModifiedDate FROM Opportunity WHERE SystemModstamp >= "
    soql += "2024-09-13T20:23:03Z ORDER BY Id"
    assert ids(query(fake, auth, soql)) == [kept]
    everything = requests.get(fake.url + QUERY + "All", params={"q": soql}, headers=auth, timeout=5)
    assert everything.status_code == 200 and ids(everything) == [kept, gone]
    deleted = everything.json()["records"][1]
    assert deleted["IsDeleted"] is True and deleted["SystemModstamp"] == sf_datetime(int(T0 + 30) * 1000)
    assert deleted["LastModifiedDate"] == sf_datetime(int(T0) * 1000)  # (guess) only SystemModstamp moves
    assert ids(query(fake, auth, "SELECT Id FROM Opportunity WHERE IsDeleted = true")) == []
    error(requests.patch(fake.url + OPP + gone, json={"Name": "x"}, headers=auth, timeout=5), 404, "ENTITY_IS_DELETED")
    fake.batch_cap = 3
    first = requests.get(fake.url + QUERY + "All", params={"q": "SELECT Id FROM Opportunity"}, headers=auth, timeout=5)
    body = first.json()
    assert body["totalSize"] == 5 and "/query/" in body["nextRecordsUrl"]  # "has query in the URL", as documented
    rest = requests.get(fake.url + body["nextRecordsUrl"], headers=auth, timeout=5).json()
    assert gone in [r["Id"] for r in body["records"] + rest["records"]] and rest["done"] is True
    fake.undelete_opportunity(gone, modstamp=T0 + 60)
    assert ids(query(fake, auth, soql)) == [kept, gone]
