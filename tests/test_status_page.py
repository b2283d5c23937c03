"""The status page `syncd run` serves on `/`: what the operator sees, drawn from the same read side as
`syncd status` and `syncd explain`, escaped, read-only, and behind a bearer token when it is not on loopback.
The last test looks at it in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import html
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import Syncd, require, running_daemon, win

SCRIPT_NAME = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deal(syncd: Syncd, name: str) -> str:
    return syncd.hubspot.add_deal(
        dealname=name, dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
    )


@dataclass
class Site:
    url: str
    dead: str  # a deal whose op went dead (the Asana team did not exist)
    created: str  # the deal named SCRIPT_NAME, which got its project
    daemon: subprocess.Popen[str]


def populate(syncd: Syncd) -> tuple[str, str]:
    """A dead op, a created project for a deal named like a script, and a quarantined record."""
    syncd.config(asana={"team": "1299999999999999"})
    dead, created = deal(syncd, "Dead Co"), deal(syncd, SCRIPT_NAME)
    syncd.ok("once")  # baseline
    win(syncd, dead)
    syncd("once")
    syncd("once")
    assert syncd.op_states() == {"dead": 1}
    syncd.config()
    win(syncd, created)
    syncd.hubspot.add_raw_deal({"id": "666", "properties": {"hs_lastmodifieddate": "not a time", "amount": "x"}})
    syncd("once")
    assert syncd.op_states() == {"dead": 1, "created": 1}
    return dead, created


@contextmanager
def serve(syncd: Syncd, **metrics: str) -> Iterator[Site]:
    """`syncd run` with `[metrics] listen` on a free loopback port, once its page answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    syncd.config(metrics={"listen": f"127.0.0.1:{port}", **metrics}, schedule={"interval_seconds": 1})

    def answers() -> bool:
        try:
            return requests.get(url + "healthz", timeout=1).status_code in (200, 401, 503)
        except requests.ConnectionError:
            return False

    with running_daemon(syncd.start("run", SYNCD_STATUS_TOKEN="s3cret-status-token-81f2"), until=answers) as daemon:
        yield Site(url, "", "", daemon)


@pytest.fixture
def site(syncd: Syncd) -> Iterator[Site]:
    dead, created = populate(syncd)
    with serve(syncd) as served:
        served.dead, served.created = dead, created
        yield served


def text_of(page: str) -> str:
    """What a person reads: the page without its tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_page_shows_health_flows_cycles_ops_and_quarantine(syncd: Syncd, site: Site) -> None:
    answer = requests.get(site.url, timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    page, seen = answer.text, text_of(answer.text)
    assert "NOT healthy" in seen and "1 dead op(s) need a human" in seen  # status's own reasons
    assert re.search(r"<td>asana calls</td><td>closed</td>", page) and re.search(r"<td>deals</td><td>\d+</td>", page)
    [dead_reason] = syncd.query("SELECT last_error FROM ops WHERE state = 'dead'")
    assert html.escape(dead_reason[0]) in page
    assert "onboarding" in seen and "active" in seen and "stage == 'closedwon'" in seen
    cycles = re.search(r'<table id="cycles">(.*?)</table>', page, re.S)
    assert cycles
    shown = [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", cycles.group(1))]  # the daemon goes on cycling
    assert shown == list(range(shown[0], 0, -1)) and shown[0] <= len(syncd.query("SELECT id FROM cycles"))
    assert "<td>ok</td>" in cycles.group(1)
    assert re.search(r"<td>dead</td><td>1</td>", page) and re.search(r"<td>created</td><td>1</td>", page)
    assert re.search(r"<td>666</td>", page)  # the quarantined record
    assert "<script" not in page  # no script at all, the CRM's least of all
    assert requests.post(site.url, timeout=5).status_code == 405  # read-only


def test_a_deal_search_shows_what_explain_prints(syncd: Syncd, site: Site) -> None:
    page = requests.get(site.url, params={"deal": site.created}, timeout=5).text
    [shown] = re.findall(r'<pre id="explain">(.*?)</pre>', page, re.S)
    assert html.unescape(shown) == syncd.ok("explain", site.created).stdout.rstrip("\n")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and SCRIPT_NAME not in page
    missing = requests.get(site.url, params={"deal": "424242"}, timeout=5).text
    assert "syncd has recorded nothing for deal 424242" in missing


def test_the_metrics_and_healthz_stay_where_they_were(site: Site) -> None:
    assert "syncd_cycles_total" in requests.get(site.url + "metrics", timeout=5).text
    assert requests.get(site.url + "healthz", timeout=5).status_code in (200, 503)


def test_a_token_is_required_off_loopback_and_checked_on_every_request(syncd: Syncd) -> None:
    syncd.config(metrics={"listen": "0.0.0.0:9464"})
    refused = syncd("status")
    assert refused.returncode == 78 and "needs a token: set token_env" in refused.stderr
    assert "Traceback" not in refused.stderr
    deal(syncd, "Acme")
    with serve(syncd, token_env="SYNCD_STATUS_TOKEN") as served:
        for path in ("", "metrics", "healthz", "?deal=1"):
            assert requests.get(served.url + path, timeout=5).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert requests.get(served.url + path, headers=wrong, timeout=5).status_code == 401
        good = {"Authorization": "Bearer s3cret-status-token-81f2"}
        answer = requests.get(served.url, headers=good, timeout=5)
        assert answer.status_code == 200 and "syncd status" in answer.text
        assert "s3cret-status-token-81f2" not in answer.text
    unset = subprocess.run(
        syncd.command("run"), env=syncd.env(), capture_output=True, text=True, timeout=30, check=False
    )
    assert unset.returncode == 78 and "The token variable SYNCD_STATUS_TOKEN is not set" in unset.stderr


def test_in_a_real_browser(syncd: Syncd, site: Site, tmp_path: Path) -> None:
    """What a person sees in chromium: the dead op's reason, the deal's history after a search, the deal
    named like a script shown as text, and no dialog ever opened."""
    require(not CHROMIUM.exists(), "chromium is not installed: apt-get install chromium (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(True, "playwright is not installed: pip install -e '.[test]'")
        raise
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(site.url)
            assert page.locator("#health").inner_text() == "NOT healthy"
            [reason] = syncd.query("SELECT last_error FROM ops WHERE state = 'dead'")
            assert reason[0] in page.locator("#dead").inner_text()
            page.fill("input[name=deal]", site.created)
            page.click("button[type=submit]")
            page.wait_for_selector("#explain")
            history = page.locator("#explain").inner_text()
            assert f"Deal {site.created} ({SCRIPT_NAME}): 2 version(s) recorded" in history
            assert "created" in history and "in_flight" in history
            assert page.evaluate("document.querySelectorAll('script').length") == 0
            page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert (tmp_path / "status-page.png").stat().st_size > 0
