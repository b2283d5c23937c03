"""The Salesforce source against the fake Salesforce over HTTP: the API allocation and the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from syncd.errors import QuotaExhausted, RateLimited
from syncd.http import HttpClient, RetryPolicy
from syncd.ratelimit import TokenBucket
from syncd.sandbox.salesforce import FakeSalesforce
from syncd.sources.salesforce import PROFILE, SalesforceSource


@pytest.fixture
def salesforce() -> Iterator[FakeSalesforce]:
    fake = FakeSalesforce()
    fake.start()
    yield fake
    fake.stop()


def source_for(fake: FakeSalesforce, stop_percent: float = 90.0, **client: Any) -> SalesforceSource:
    http = HttpClient(
        "salesforce",
        fake.url,
        {},
        {"default": TokenBucket.for_limit(1e6, 1.0)},
        PROFILE,
        timeout=(1.0, 2.0),
        retry=RetryPolicy(max_tries=3, base=0.0),
        **client,
    )
    return SalesforceSource(
        http,
        ("name", "stage", "amount"),
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        refresh_token=fake.refresh_token,
        page_size=200,
        stop_percent=stop_percent,
    )


def seed(fake: FakeSalesforce, n: int) -> None:
    for i in range(n):
        fake.add_opportunity(Name=f"Opp {i}", StageName="Prospecting", Amount=1000, modstamp=fake.now() - 60 + i / 100)


def test_a_cycle_stops_early_near_the_daily_allocation_without_losing_its_place(salesforce: FakeSalesforce) -> None:
    seed(salesforce, 450)  # three batches of 200
    salesforce.daily_limit, salesforce.api_used = 100, 88
    source = source_for(salesforce, stop_percent=90)
    pages = []
    with pytest.raises(RateLimited, match=r"API usage is 9\d/100"):
        for page in source.pages(None, 1000):
            pages.append(page)
    assert pages and len(pages) < 3, "it stopped before spending the rest of the allocation"
    assert pages[-1].cursor_ms < int((salesforce.now() - 1) * 1000), "the cursor stays at what was read"


def test_a_concurrent_request_limit_is_retried_and_an_expired_session_refreshes_once(
    salesforce: FakeSalesforce,
) -> None:
    seed(salesforce, 3)
    source = source_for(salesforce)
    assert sum(len(p.deals) for p in source.pages(None, 1000)) == 3
    tokens, queries = salesforce.token_requests, salesforce.query_requests
    salesforce.expire_tokens()
    salesforce.inject("concurrent_limit", route="query")  # 403 REQUEST_LIMIT_EXCEEDED, ConcurrentRequests: retried
    assert sum(len(p.deals) for p in source.pages(None, 1000)) == 3
    assert salesforce.token_requests == tokens + 1
    assert salesforce.query_requests == queries + 3  # the 401, the 403, the answer


def test_the_spent_allocation_is_not_retried_and_pauses_salesforce_for_30_minutes(salesforce: FakeSalesforce) -> None:
    seed(salesforce, 3)
    salesforce.daily_limit = salesforce.api_used = 5  # the next call answers 403 REQUEST_LIMIT_EXCEEDED
    pauses: list[float] = []
    source = source_for(salesforce, on_pause=pauses.append, wall=lambda: 1_760_000_000.0)
    with pytest.raises(QuotaExhausted, match=r"TotalRequests Limit exceeded.*rolling 24-hour.*pause until") as caught:
        list(source.pages(None, 1000))
    assert salesforce.query_requests == 1, "one request for the call: no retries"
    assert caught.value.retry_after == 1800 and pauses == [1_760_000_000.0 + 1800]
    sent = len(salesforce.requests)
    with pytest.raises(RateLimited, match="resuming next cycle"):
        list(source.pages(None, 1000))  # a second call within the pause
    with pytest.raises(RateLimited):
        source.write_back("0068d0000000001AAA", "Name", "x")
    assert len(salesforce.requests) == sent, "nothing sent within the pause"


def test_a_request_limit_fault_is_the_spent_allocation_too(salesforce: FakeSalesforce) -> None:
    seed(salesforce, 1)
    salesforce.inject("request_limit", route="query")
    with pytest.raises(QuotaExhausted):
        list(source_for(salesforce).pages(None, 1000))
    assert salesforce.query_requests == 1


def test_after_stopping_at_the_allocation_each_cycle_asks_limits_once_and_resumes(salesforce: FakeSalesforce) -> None:
    """The allocation is a rolling 24 hours: a daemon that stopped must find out when calls have aged out."""
    seed(salesforce, 3)
    salesforce.daily_limit, salesforce.api_used = 100, 95
    source = source_for(salesforce, stop_percent=90)  # one source for the life of the process, as `syncd run` keeps
    assert sum(len(p.deals) for p in source.pages(None, 1000)) == 3  # its answer says 97/100
    sent = len(salesforce.requests)
    with pytest.raises(RateLimited, match=r"API usage is 9\d/100"):
        list(source.pages(None, 1000))  # the next cycle, still over: one request, the limits
    assert [r.path for r in salesforce.requests[sent:]] == ["/services/data/v60.0/limits"]
    salesforce.clock_offset += 86_400  # a day later the 95 calls have aged out of the window
    assert sum(len(p.deals) for p in source.pages(None, 1000)) == 3
