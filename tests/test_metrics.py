"""Metrics: each series appears once observed, /healthz tells a fresh daemon from a stale one over real HTTP,
and two `Metrics` never share a registry."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.errors import ConfigError
from syncd.metrics import Metrics, parse_listen
from syncd.models import OP_STATES, CycleReport, State
from syncd.store import SqliteStore, read_status
from syncd.store.read import Health, LastCycle, Status

T0 = 1_760_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    return Metrics(stale_after_seconds=600, clock=clock)


@pytest.fixture
def served(metrics: Metrics) -> Iterator[str]:
    server, thread = metrics.serve("127.0.0.1:0")
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


def status(*, last_success: float | None, cursor: float | None = None, ok: bool = True, **ops: int) -> Status:
    """A `read_status` answer with the parts metrics read."""
    return Status(
        database=Path("syncd.db"),
        now=T0,
        cursor_ms=None if cursor is None else int(cursor * 1000),
        baseline_recorded_at=None,
        last_cycle=LastCycle(ok, T0 - 1, T0, None if ok else "hubspot: no response within 30s"),
        last_success_at=last_success,
        deals=0,
        ops=dict.fromkeys(OP_STATES, 0) | {State(name): count for name, count in ops.items()},
        dead_ops=(),
        quarantine=0,
        quarantined_records=(),
        effects={},
        health=Health(),
    )


def sample(metrics: Metrics, line_start: str) -> float:
    [line] = [line for line in metrics.text().splitlines() if line.startswith(line_start + " ")]
    return float(line.rsplit(" ", 1)[1])


def test_every_series_appears_after_observations(metrics: Metrics, clock: Clock) -> None:
    metrics.observe_request("hubspot", 200)
    metrics.observe_request("hubspot", 200)
    metrics.observe_request("asana", 429)
    metrics.observe_request("asana", None)
    report = CycleReport(pages=2, deals_seen=40)
    metrics.observe_cycle(report, status(last_success=T0 - 5, cursor=T0 - 90, created=3, dead=1))
    metrics.observe_cycle(CycleReport(deals_seen=2, errors=["boom"]), status(last_success=T0 - 5, cursor=T0 - 90))
    clock.now += 10

    assert sample(metrics, 'syncd_cycles_total{result="ok"}') == 1
    assert sample(metrics, 'syncd_cycles_total{result="failed"}') == 1
    assert sample(metrics, "syncd_deals_seen_total") == 42
    assert sample(metrics, 'syncd_api_requests_total{service="hubspot",status="200"}') == 2
    assert sample(metrics, 'syncd_api_requests_total{service="asana",status="429"}') == 1
    assert sample(metrics, 'syncd_api_requests_total{service="asana",status="none"}') == 1
    assert sample(metrics, 'syncd_rate_limited_total{service="asana"}') == 1
    assert sample(metrics, 'syncd_ops{state="created"}') == 0  # the second status replaced the first
    assert sample(metrics, 'syncd_ops{state="pending"}') == 0
    assert sample(metrics, "syncd_cursor_age_seconds") == pytest.approx(100)  # measured when scraped
    assert sample(metrics, "syncd_last_success_timestamp_seconds") == pytest.approx(T0 - 5)
    assert sample(metrics, "syncd_up") == 1


def test_before_anything_is_known(metrics: Metrics) -> None:
    assert math.isnan(sample(metrics, "syncd_cursor_age_seconds"))
    assert sample(metrics, "syncd_last_success_timestamp_seconds") == 0
    assert sample(metrics, 'syncd_cycles_total{result="ok"}') == 0
    assert sample(metrics, 'syncd_ops{state="dead"}') == 0


def test_gauges_from_a_real_status(tmp_path: Path, metrics: Metrics) -> None:
    store = SqliteStore.open(tmp_path / "syncd.db")
    try:
        cycle = store.start_cycle(T0 - 20)
        store.finish_cycle(cycle, T0 - 10, ok=True, error=None, deals_seen=4, created=0)
    finally:
        store.close()
    metrics.observe_cycle(CycleReport(deals_seen=4), read_status(tmp_path / "syncd.db", T0))
    assert sample(metrics, "syncd_last_success_timestamp_seconds") == pytest.approx(T0 - 10)
    assert sample(metrics, 'syncd_ops{state="unknown"}') == 0


def test_healthz_follows_the_last_success(metrics: Metrics, clock: Clock, served: str) -> None:
    answer = requests.get(served + "/healthz", timeout=2)
    assert (answer.status_code, answer.text) == (200, "ok\n")  # just started: not stale yet

    clock.now += 601
    answer = requests.get(served + "/healthz", timeout=2)
    assert answer.status_code == 503
    assert answer.text == "no successful cycle since syncd started 601s ago (limit 600s)\n"

    metrics.observe_cycle(CycleReport(), status(last_success=clock.now - 1))
    assert requests.get(served + "/healthz", timeout=2).status_code == 200

    clock.now += 700
    metrics.observe_cycle(CycleReport(errors=["x"]), status(last_success=clock.now - 700, ok=False))
    answer = requests.get(served + "/healthz", timeout=2)
    assert answer.status_code == 503
    assert answer.text == ("no successful cycle for 700s (limit 600s); last error: hubspot: no response within 30s\n")
    assert sample(metrics, "syncd_up") == 0


def test_metrics_are_served_over_http(metrics: Metrics, served: str) -> None:
    metrics.observe_request("asana", 201)
    answer = requests.get(served + "/metrics", timeout=2)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert 'syncd_api_requests_total{service="asana",status="201"} 1.0' in answer.text
    assert "syncd_up 1.0" in answer.text


def test_two_metrics_never_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("hubspot", 200)
    assert 'service="hubspot"' not in second.text()


def test_counting_is_thread_safe(metrics: Metrics) -> None:
    def hammer() -> None:
        for _ in range(500):
            metrics.observe_request("hubspot", 200)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sample(metrics, 'syncd_api_requests_total{service="hubspot",status="200"}') == 4000


@pytest.mark.parametrize("value", ["9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":9464"])
def test_a_bad_listen_address_is_a_sentence(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[metrics\] listen = .* must look like \"127.0.0.1:9464\""):
        parse_listen(value)


def test_listen_parses_v4_and_v6() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)


def test_a_port_in_use_is_a_config_error(metrics: Metrics, served: str) -> None:
    port = served.rsplit(":", 1)[1]
    with pytest.raises(ConfigError, match="cannot listen there"):
        Metrics().serve(f"127.0.0.1:{port}")
