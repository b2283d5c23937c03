"""Failover on PostgreSQL (issue 15): the time from a `kill -9` of the lease holder to the next lease, with two
`syncd run` on one database, measured by the soak that also proves no duplicate and nothing lost
(tests/test_failover.py, twenty kills at random moments). This runs it and prints its figures.

    SYNCD_TEST_POSTGRES_URL=postgresql://... python bench/failover.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOAK = "tests/test_failover.py::test_twenty_kills_of_the_holder_give_no_duplicate_and_nothing_lost"


def main() -> None:
    if not os.environ.get("SYNCD_TEST_POSTGRES_URL"):
        sys.exit("set SYNCD_TEST_POSTGRES_URL to a PostgreSQL URL the tests may create schemas in")
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-m", "soak", "-p", "no:cacheprovider", SOAK]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    mark = "failover (kill -9"
    figures = [line[line.index(mark) :] for line in result.stdout.splitlines() if mark in line]
    if result.returncode != 0 or not figures:
        sys.exit(f"bench/failover.py: the soak failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
    for line in figures:
        print(line)


if __name__ == "__main__":
    main()
