"""Learning Asana's limit (issue 14): start at the paid plan's rate, drop to what a 429 with Retry-After
reveals, keep it per workspace in the database, show it in `syncd status`, forget it with `syncd reset-rate`.
`[asana] requests_per_minute` stays an explicit cap."""

from __future__ import annotations

import json
import re
from pathlib import Path

from syncd import asana_rate
from syncd.compose import asana_bucket
from syncd.http import HttpClient
from syncd.ratelimit import TokenBucket
from syncd.store import SqliteStore

from conftest import FAST, Syncd, qualify


def test_a_429_after_a_full_window_teaches_the_limit() -> None:
    bucket = TokenBucket.for_limit(1500, 60.0, learn_floor=150)
    now = 0.0
    for _ in range(151):  # 150 let through, the 151st refused
        now += bucket.reserve(now) + 0.001
    assert bucket.learn(now) == 150
    assert bucket.limit == 150 and bucket.rate == 150 * 0.98 / 60
    assert bucket.learn(now) is None, "a rate is only ever lowered"


def test_a_429_after_few_requests_teaches_nothing() -> None:
    """Fewer requests than the smallest plan allows: the 429 was about something else (a fault, concurrency)."""
    bucket = TokenBucket.for_limit(1500, 60.0, learn_floor=150)
    for step in range(20):
        bucket.reserve(step * 0.1)
    assert bucket.learn(2.0) is None and bucket.limit == 1500


def test_requests_older_than_the_window_do_not_count() -> None:
    bucket = TokenBucket.for_limit(1500, 60.0, learn_floor=150)
    for step in range(200):
        bucket.reserve(step * 0.05)  # 10 s of requests
    assert bucket.learn(65.0) is None  # a minute later they are all outside the window


def test_the_cap_is_where_syncd_starts_and_nothing_learned_raises_it() -> None:
    assert asana_bucket(None).limit == asana_rate.PAID_PER_MINUTE
    capped = asana_bucket(150)
    assert capped.limit == 150
    capped.limit_to(1500)
    assert capped.limit == 150


def test_what_was_learned_holds_the_next_process(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "syncd.db")
    try:
        asana_rate.save(store, "1200000000000001", 150, 1_700_000_000.0)
        http = HttpClient("asana", "http://127.0.0.1:9", {}, {"default": asana_bucket(None)})
        asana_rate.apply(http, store, "1200000000000001", lambda: 0.0, learn=True)
        assert http.buckets["default"].limit == 150
        other = HttpClient("asana", "http://127.0.0.1:9", {}, {"default": asana_bucket(None)})
        asana_rate.apply(other, store, "1299999999999999", lambda: 0.0, learn=False)  # another workspace
        assert other.buckets["default"].limit == 1500 and other.on_limit is None
        http.close(), other.close()
    finally:
        store.close()


def test_a_free_workspace_gets_one_429_and_status_shows_what_it_taught(syncd: Syncd) -> None:
    syncd.config(**FAST)
    text = syncd.config_path.read_text()
    syncd.config_path.write_text(re.sub(r"(?m)^requests_per_minute = .*\n", "", text))  # no cap: learn the limit
    qualify(syncd, 149)
    syncd.asana.rate_per_minute = 150  # the free plan: the 2 listing pages and 148 POSTs pass, the 149th is refused
    syncd("once")
    assert syncd.asana.rate_limited == 1 and syncd.asana.early_requests == 0
    assert syncd.op_states() == {"created": 148, "pending": 1}
    (value,) = syncd.query("SELECT value FROM meta WHERE key = ?", asana_rate.key(syncd.asana.workspace))[0]
    assert json.loads(value)["per_minute"] == 150
    status = syncd("status")
    assert f"asana rate   150/min for workspace {syncd.asana.workspace}" in status.stdout
    assert json.loads(syncd("status", "--json").stdout)["asana_rates"][syncd.asana.workspace]["per_minute"] == 150
    reset = syncd.ok("reset-rate")
    assert "Forgot 150/min" in reset.stdout and "starts at 1500/min" in reset.stdout
    assert "nothing learned: starts at 1500/min" in syncd("status").stdout
    assert "Nothing was learned" in syncd.ok("reset-rate").stdout
