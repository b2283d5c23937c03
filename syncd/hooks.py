"""Seams for the reliability tests, armed by the tests (never by the environment or the config).

Light on purpose: the CLI imports it before it takes the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


def _no_step(name: str) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """Seams for the tests. `step(name)` is called at each point where a crash is interesting (see `STEPS`);
    `blind_retry=True` re-sends `unknown` ops without reconcile and creates without checking Asana first,
    which duplicates (the suite's negative control proves that these checks are what prevents it); `clock` is
    the engine's wall clock (tests move it instead of sleeping through a settle delay or a retry backoff);
    `skip_lease_check=True` sends without checking that enough of the PostgreSQL lease is left, which
    duplicates when the holder froze past its lease (the negative control for that check)."""

    step: Callable[[str], None] = _no_step
    blind_retry: bool = False
    clock: Callable[[], float] = time.time
    skip_lease_check: bool = False  # PostgreSQL's negative control: send even when the lease may have run out


STEPS = (
    "before_page_commit",
    "after_page_commit",
    "after_inflight_commit",
    "after_post",
    "after_created_commit",
    "after_failed_post",
    "after_effect_inflight_commit",
    "after_effect_post",
)
