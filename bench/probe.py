"""Run the real `syncd` command in this process, timing every SQLite call; optionally under pyinstrument.

    python bench/probe.py --stats FILE [--profile FILE] -- --config PATH once

is `python -m syncd --config PATH once` plus two things the benchmarks need to see from outside:
- every `sqlite3` connection syncd opens is a `TimedConnection`, whose cursors add the time spent in
  `execute`, `executemany` and row fetching to a total (COMMITs, where `synchronous=FULL` fsyncs, separately);
  the totals are written to FILE as JSON when the command exits. The wrapper costs about a microsecond a call.
- `--profile FILE` runs the command under pyinstrument (if it is installed) and writes its text report.

Nothing in `syncd` is patched: only the stdlib `sqlite3.connect` is given a connection factory.
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

clock = time.perf_counter
totals = {"sqlite_s": 0.0, "commit_s": 0.0, "statements": 0, "commits": 0, "fetch_s": 0.0}


def _count(sql: str, started: float) -> None:
    spent = clock() - started
    totals["sqlite_s"] += spent
    totals["statements"] += 1
    if sql.lstrip()[:6].upper() == "COMMIT":
        totals["commit_s"] += spent
        totals["commits"] += 1


def _fetched(started: float) -> None:
    spent = clock() - started
    totals["sqlite_s"] += spent
    totals["fetch_s"] += spent


class TimedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> TimedCursor:
        started = clock()
        try:
            return super().execute(sql, parameters)
        finally:
            _count(sql, started)

    def executemany(self, sql: str, parameters: Any, /) -> TimedCursor:
        started = clock()
        try:
            return super().executemany(sql, parameters)
        finally:
            _count(sql, started)

    def __next__(self) -> Any:
        started = clock()
        try:
            return super().__next__()
        finally:
            _fetched(started)

    def fetchone(self) -> Any:
        started = clock()
        try:
            return super().fetchone()
        finally:
            _fetched(started)

    def fetchmany(self, size: int = 1) -> list[Any]:
        started = clock()
        try:
            return super().fetchmany(size)
        finally:
            _fetched(started)

    def fetchall(self) -> list[Any]:
        started = clock()
        try:
            return super().fetchall()
        finally:
            _fetched(started)


class TimedConnection(sqlite3.Connection):
    def cursor(self, factory: Any = TimedCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stats", type=Path, required=True, help="Write the SQLite totals here (JSON).")
    parser.add_argument("--profile", type=Path, help="Run under pyinstrument and write its text report here.")
    parser.add_argument("syncd_args", nargs=argparse.REMAINDER, help="The syncd command line, after '--'.")
    args = parser.parse_args()
    rest = args.syncd_args[1:] if args.syncd_args[:1] == ["--"] else args.syncd_args
    sys.argv = ["syncd", *rest]
    sqlite3.connect = functools.partial(sqlite3.connect, factory=TimedConnection)  # type: ignore[assignment]

    profiler = None
    if args.profile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            sys.exit("bench/probe.py: --profile needs pyinstrument: pip install pyinstrument")
        profiler = Profiler(interval=0.001)
        profiler.start()
    from syncd.cli import main as syncd_main

    try:
        syncd_main()
    finally:
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        args.stats.write_text(json.dumps(totals))


if __name__ == "__main__":
    main()
