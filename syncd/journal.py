"""How syncd's log lines look and which ones are written: for journald, for a person at a terminal, as JSON.

The contract, set up once by the CLI (`setup`):

- One line per event. A message's own line breaks are folded into " | ", so a cycle is one journal entry;
  a traceback (a programming error) keeps its lines, each carrying the event's priority under journald.
- Every line goes to stderr; stdout is the command's own output.
- Under journald (`$JOURNAL_STREAM` names stderr) text lines carry no timestamp, the journal adds its own,
  and start with the syslog priority (`<3>` for ERROR), so `journalctl -p warning` finds failed cycles.
- `format = "json"` writes one JSON object a line: level, logger, message, and the time outside journald
  (under journald, the priority prefix too).
- On a terminal, progress ("baseline: 12,000 deals, 60 pages, 14 s") is redrawn in place every second;
  elsewhere it is a line every 10 s.
- Verbosity: 0 shows warnings, errors and progress (plus `syncd run`'s events); 1 (`-v`) adds one line per
  API call; 2 (`-vv`) adds debug detail such as rate-limit waits. APScheduler logs only warnings and worse
  at every verbosity: its INFO lines repeat what syncd says itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from syncd.models import iso_ms
from syncd.progress import Progress
from syncd.redact import RedactingFilter

if TYPE_CHECKING:
    from syncd.models import CycleReport

FORMATS = ("text", "json")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
# Loggers whose level `setup` sets; tests that run the CLI in-process put them back afterwards.
LOGGERS = ("syncd", "syncd.http", "syncd.progress", "apscheduler", "urllib3")


def under_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal: `$JOURNAL_STREAM` ("device:inode", set by systemd) names it.
    A program that systemd started but whose stderr was redirected elsewhere is not writing to the journal."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class TextLines(logging.Formatter):
    """`2026-12-02T00:20:01Z INFO syncd: message`, or `<6>INFO syncd: message` under journald."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        record.msg, record.args = one_line(record.getMessage()), None
        text = super().format(record)
        if self.journal:
            priority = _PRIORITY.get(record.levelno, 6)
            return "\n".join(f"<{priority}>{line}" for line in text.splitlines())
        return f"{iso(record.created)} {text}"


class JsonLines(logging.Formatter):
    """One JSON object a line. Under journald the time is left to the journal and the line starts with the
    syslog priority, which journald strips: what it stores is the JSON alone."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {} if self.journal else {"time": iso(record.created)}
        line |= {"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_text:
            line["traceback"] = record.exc_text
        text = json.dumps(line, ensure_ascii=False)
        return f"<{_PRIORITY.get(record.levelno, 6)}>{text}" if self.journal else text


def one_line(message: str) -> str:
    return " | ".join(part.strip() for part in message.splitlines() if part.strip())


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class TerminalLines(logging.StreamHandler):  # type: ignore[type-arg]
    """For a person at a terminal: a progress line (its message only) is redrawn in place, the terminal's
    progress bar, and the next other line, or the closing "done" line, replaces it."""

    drawn = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            progress = record.name == "syncd.progress" and record.levelno == logging.INFO
            text = self.format(record) if not progress else one_line(record.getMessage())
            clear = "\r\x1b[K" if self.drawn else ""
            self.drawn = progress and not getattr(record, "progress_done", False)
            self.stream.write(clear + ("\r" + text if self.drawn else text + "\n"))
            self.flush()
        except Exception:
            self.handleError(record)


def setup(verbose: int, log_format: str = "text", *, daemon: bool = False, stream: TextIO | None = None) -> None:
    """Route every log line to `stream` (default stderr) in `log_format`, at the verbosity in the module
    docstring; `daemon` also shows syncd's own INFO events (cycles, signals, reloads) without `-v`."""
    stream = stream or sys.stderr
    journal = under_journal(stream)
    terminal = not journal and log_format == "text" and stream.isatty()
    handler = TerminalLines(stream) if terminal else logging.StreamHandler(stream)
    Progress.every = 1.0 if terminal else 10.0
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonLines(journal) if log_format == "json" else TextLines(journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    events = logging.DEBUG if verbose >= 2 else logging.INFO if verbose or daemon else logging.WARNING
    logging.getLogger("syncd").setLevel(events)
    logging.getLogger("syncd.http").setLevel(
        logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
    )
    logging.getLogger("syncd.progress").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def cycle_event(report: CycleReport) -> tuple[int, str]:
    """The one line a finished cycle logs (`syncd.engine`), and its level: ERROR when it failed, WARNING when
    it left dead ops or warnings or was interrupted, else INFO (shown by `syncd run`, and by the other commands
    with -v)."""
    if report.baseline and not report.errors:
        head = f"baseline recorded: {report.deals_seen} deals in {report.pages} page(s)"
    else:
        outcome = "FAILED" if report.errors else "ok"
        head = (
            f"cycle {outcome}: {report.pages} page(s), {report.deals_seen} deals seen, {report.deals_changed} "
            f"changed, {len(report.created)} created, {len(report.dead)} dead"
        )
    parts = [head, f"cursor {iso_ms(report.cursor_ms) or 'not set'}"]
    parts += [f"interrupted by {report.interrupted} after the step in progress"] if report.interrupted else []
    parts += [f"dead: {line}" for line in report.dead]
    parts += [f"warning: {line}" for line in report.warnings]
    parts += [f"error: {line}" for line in report.errors]
    noted = report.dead or report.warnings or report.interrupted
    level = logging.ERROR if report.errors else logging.WARNING if noted else logging.INFO
    return level, "; ".join(parts)
