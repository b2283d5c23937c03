"""`syncd retry <deal-id>`: a dead op goes back through reconcile, never a blind re-create."""

from __future__ import annotations

from conftest import FAST, Syncd, assert_exactly_once, qualify


def test_retry_after_fixing_the_config_creates_once(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana={**FAST["asana"], "team": "1299999999999999"})
    (deal,) = qualify(syncd, 1)
    assert syncd("once").returncode == 1
    assert syncd.op_states() == {"dead": 1}
    assert "has no dead op" in syncd("retry", "424242").stdout
    syncd.config(**FAST)
    result = syncd("retry", deal)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Reconciling 1 op(s) of deal {deal}" in result.stdout
    assert_exactly_once(syncd, [deal])


def test_retry_finds_a_project_that_exists_and_does_not_post_again(syncd: Syncd) -> None:
    """The op went dead although its project exists (Asana's listing lagged past the settle delay and the
    budget was one attempt). `syncd retry` reconciles first, finds it, and sends no second POST."""
    syncd.config(http=FAST["http"], asana={**FAST["asana"], "max_attempts": 1})
    (deal,) = qualify(syncd, 1)
    syncd.asana.list_lag = 2.5
    syncd.asana.inject("504_after_create", route="create")  # created, but syncd saw a 504
    syncd("once")
    syncd.tick(0.7)
    assert syncd("once").returncode == 1
    assert syncd.op_states() == {"dead": 1}
    syncd.tick(2.0)  # the listing catches up
    posts = syncd.asana.create_requests
    result = syncd("retry", deal)
    assert result.returncode == 0, result.stdout
    assert "found by reconcile" in result.stdout
    assert syncd.asana.create_requests == posts
    assert_exactly_once(syncd, [deal])
