"""Salesforce refresh-token rotation (issue 12, row 1): each refresh returns a new token and invalidates the old
one, so syncd keeps the newest in memory and in a 0600 file beside its database, and reads it at the next start."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.kit import DRIVERS
from syncd.sources.refresh_token import RefreshToken, token_file

from conftest import CANARIES, CrmSyncd


@pytest.fixture
def salesforce_syncd(tmp_path: Path, asana: FakeAsana) -> Iterator[CrmSyncd]:
    crm = DRIVERS["salesforce"](CANARIES).start()
    runner = CrmSyncd(tmp_path, crm, asana)
    runner.config()
    yield runner
    crm.stop()


def test_a_rotated_token_survives_restarts_and_expired_sessions(salesforce_syncd: CrmSyncd) -> None:
    s = salesforce_syncd
    fake = s.crm.fake
    assert fake.rotate_refresh_token
    deal = s.crm.add("Deal 1")
    s.ok("once")  # baseline: the configured token works once, and is retired by the answer
    saved = token_file(s.workdir / "syncd.db")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["refresh_token"] == fake.refresh_token
    fake.expire_tokens()  # the next call is a 401: a second refresh within the run needs the rotated token
    s.crm.win(deal)
    s.ok("once")  # a new process: it must read the rotated token, not the retired configured one
    assert len(s.asana.projects) == 1
    check = s.ok("check")
    assert f"salesforce: using the rotated refresh token in {saved}" in check.stdout
    for leak in (fake.refresh_token, CANARIES["SALESFORCE_REFRESH_TOKEN"]):
        assert leak not in check.stdout + check.stderr
        assert leak not in s("status", "--json").stdout
        assert leak.encode() not in (s.workdir / "syncd.db").read_bytes()


def test_a_newly_configured_token_wins_over_one_rotated_from_the_old(salesforce_syncd: CrmSyncd) -> None:
    s = salesforce_syncd
    fake = s.crm.fake
    s.ok("once")
    fake.refresh_token = "re-authorized-token-0001"  # an operator authorized again and configured the new token
    result = s("once", SALESFORCE_REFRESH_TOKEN="re-authorized-token-0001")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-authorized-token-0001" not in result.stdout + result.stderr


def test_a_rejected_rotated_token_says_which_token_failed(salesforce_syncd: CrmSyncd) -> None:
    s = salesforce_syncd
    s.ok("once")
    s.crm.fake.refresh_token = "revoked-elsewhere-0001"  # the rotated token was revoked in Salesforce's setup
    result = s("once")
    assert result.returncode != 0
    assert "the rotated refresh token in" in result.stdout + result.stderr


def test_the_file_is_ignored_when_unreadable_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db.salesforce-token"
    path.write_text("{not json")
    token = RefreshToken("configured-0001", path)
    assert token.value == "configured-0001" and token.origin == "the configured refresh token"
    token.rotate("rotated-0002")
    assert RefreshToken("configured-0001", path).value == "rotated-0002"
    assert not list(tmp_path.glob("*.tmp"))
