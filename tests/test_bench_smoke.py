"""The benchmark runner works on a clean clone: CI smoke-runs its smallest size. Benchmarks are not tests, so
nothing here asserts a timing; it asserts that every row and every target line comes out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
KINDS = {"start-up", "baseline", "status", "idle", "incremental", "comparison", "check-before-create", "rate-limited"}


@pytest.mark.soak  # a long run by design, like the soaks: CI runs it with `pytest -m soak`
def test_bench_run_smoke_emits_every_row_and_target(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--json", "--workdir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {row["kind"] for row in report["rows"]} == KINDS
    for row in report["rows"]:
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 0, row
    assert {target["kind"] for target in report["targets"]} == KINDS - {"start-up"}
    assert all(target["met"] in (True, False, None) for target in report["targets"])
    assert report["machine"]["nproc"] >= 1 and report["machine"]["python"]
