"""The repo checks itself: the README's commands work, every command has help, `python -m syncd` runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
COMMANDS = ["once", "run", "status", "demo", "retry", "explain", "backfill", "check", "flow", "history", "quarantine"]


def syncd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncd", *args], capture_output=True, text=True, timeout=120)


def test_the_readme_shows_the_two_newcomer_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && syncd demo" in readme
    assert "pip install -e '.[test]' && pytest" in readme
    # CI runs scripts/check with no arguments, whose last step is pytest with only those arguments: the
    # pyproject's defaults, as the README's `pytest` has them.
    assert re.search(r"^scripts/check$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert re.search(r'^"\$PYTHON" -m pytest "\$@"$', (ROOT / "scripts" / "check").read_text(), re.MULTILINE)


def test_syncd_demo_shows_exactly_once_through_a_lost_response() -> None:
    result = syncd("demo")
    assert result.returncode == 0, result.stderr
    assert "Created: Onboarding: Umbrella" in result.stdout
    assert "Created: Onboarding: Acme (found by reconcile)" in result.stdout
    assert "2 project(s) from 2 create request(s), 8 task(s); duplicates: none" in result.stdout
    assert "Acme: asana_project_url = https://app.asana.com/" in result.stdout
    assert "task: Kickoff call with Umbrella (due 2026-12-22)" in result.stdout
    assert "healthy      yes" in result.stdout


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None) -> None:
    result = syncd(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 3


def test_usage_errors_exit_2() -> None:
    assert syncd("nonsense").returncode == 2
    assert syncd("once", "--bogus").returncode == 2


def test_the_readme_tables_match_the_commands_and_the_exit_codes() -> None:
    from syncd.errors import EX_CONFIG, EX_IOERR, EX_TEMPFAIL
    from syncd.interrupts import EXIT_CODES

    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^  (\w+)  ", syncd("--help").stdout.partition("Commands:")[2], re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS)
    assert [name for name in listed if f"| `syncd {name}" not in readme] == []
    documented = {
        int(code) for row in re.findall(r"^\| (\d+(?:, \d+)*) \|", readme, re.MULTILINE) for code in row.split(", ")
    }
    assert documented == {0, 1, 2, EX_IOERR, EX_TEMPFAIL, EX_CONFIG, *EXIT_CODES.values()}
