"""The SQLite schema: migrations as functions (sqlite-utils `Migrations`), applied in order on open, and the
connection settings every writer and reader uses.

Durability (DESIGN.md §4): WAL, `synchronous=FULL` (an `in_flight` commit must survive power loss),
`busy_timeout`, `foreign_keys=ON`, and CHECK constraints that make impossible states impossible.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from syncd.errors import StoreError
from syncd.models import OP_STATES

migrations = Migrations("syncd")


@migrations()
def create_tables(db: Database) -> None:
    states = ", ".join(f"'{s}'" for s in OP_STATES)
    db.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            value_ms INTEGER NOT NULL CHECK (value_ms >= 0),
            updated_at REAL NOT NULL
        );
        CREATE TABLE deals (
            id TEXT PRIMARY KEY,
            updated_at_ms INTEGER NOT NULL,
            properties TEXT NOT NULL,
            matches TEXT NOT NULL,
            first_seen_at REAL NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE TABLE ops (
            op_key TEXT PRIMARY KEY,
            flow TEXT NOT NULL,
            deal_id TEXT NOT NULL REFERENCES deals(id),
            state TEXT NOT NULL CHECK (state IN ({states})),
            marker TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            asana_gid TEXT UNIQUE,
            asana_url TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            CHECK ((state = 'created') = (asana_gid IS NOT NULL)),
            CHECK (state = 'pending' OR last_attempt_at IS NOT NULL OR state = 'dead')
        );
        CREATE INDEX ops_state_due ON ops (state, next_attempt_at);
        CREATE TABLE op_events (
            id INTEGER PRIMARY KEY,
            op_key TEXT NOT NULL REFERENCES ops(op_key),
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX op_events_op ON op_events (op_key, id);
        CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            record_id TEXT,
            reason TEXT NOT NULL,
            excerpt TEXT NOT NULL,
            seen_at REAL NOT NULL
        );
        CREATE INDEX quarantine_record ON quarantine (record_id);
        CREATE TABLE cycles (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL,
            ok INTEGER,
            error TEXT,
            deals_seen INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL DEFAULT 0
        );
    """)


@migrations()
def create_deal_versions(db: Database) -> None:
    """Every version of a deal syncd recorded, for `syncd explain` ("why did / didn't this deal get a project?")."""
    db.executescript("""
        CREATE TABLE deal_versions (
            id INTEGER PRIMARY KEY,
            deal_id TEXT NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            properties TEXT NOT NULL,
            matches TEXT NOT NULL,
            newly TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE INDEX deal_versions_deal ON deal_versions (deal_id, updated_at_ms);
    """)


@migrations()
def create_effects(db: Database) -> None:
    """Follow-up side effects of a project (template completion, tasks, CRM write-back, Slack message), each
    exactly once, run in `seq` order once their project exists; and per-flow entry counts for re-firing."""
    db.executescript("""
        ALTER TABLE deals ADD COLUMN entries TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE ops ADD COLUMN job_gid TEXT;
        CREATE TABLE effects (
            effect_key TEXT PRIMARY KEY,
            op_key TEXT NOT NULL REFERENCES ops(op_key),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('template', 'task', 'writeback', 'notify')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'unknown', 'done', 'dead')),
            body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            result TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (op_key, seq)
        );
        CREATE INDEX effects_due ON effects (state, next_attempt_at);
    """)


@migrations()
def one_event_log(db: Database) -> None:
    """Ops and effects are one state machine (`syncd.store.ledger`), so they share one event log: every
    transition of either is a row here. Before, only ops had events (`op_events`)."""
    db.executescript("""
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ledger TEXT NOT NULL CHECK (ledger IN ('ops', 'effects')),
            key TEXT NOT NULL,
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        );
        INSERT INTO events (id, ledger, key, at, state, detail)
            SELECT id, 'ops', op_key, at, state, detail FROM op_events ORDER BY id;
        DROP TABLE op_events;
        CREATE INDEX events_key ON events (ledger, key, id);
    """)


@migrations()
def know_the_same_project_by_other_names(db: Database) -> None:
    """An op's aliases: the markers its project may carry instead (a renamed flow's previous names, deals the
    CRM merged into this one), checked before any create."""
    db.executescript("ALTER TABLE ops ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';")


@migrations()
def baselines_per_flow(db: Database) -> None:
    """Every baseline a flow got: at the first cycle, when it was added, when its `when` changed. The newest
    row per flow is the rule its recorded state was judged by."""
    db.executescript("""
        CREATE TABLE flow_baselines (
            id INTEGER PRIMARY KEY,
            flow TEXT NOT NULL,
            rule TEXT NOT NULL,
            at REAL NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE INDEX flow_baselines_flow ON flow_baselines (flow, id);
    """)


@migrations()
def remember_how_a_request_failed(db: Database) -> None:
    """Why a row is `unknown` (`syncd.errors.DOUBTS`, or 'crash' for one found `in_flight` at startup): a server
    that answered, or hung up on a request it had taken whole, is done with it, so reconcile need only wait for
    the listing to catch up; otherwise it waits past the read timeout."""
    db.executescript("""
        ALTER TABLE ops ADD COLUMN doubt TEXT;
        ALTER TABLE effects ADD COLUMN doubt TEXT;
    """)


@migrations()
def operator_requests(db: Database) -> None:
    """What an operator asked for while another syncd held the lock (`retry`, `backfill`), applied by the
    holder at the start of its next cycle; the flows paused by `syncd flow pause`; which signal, if any,
    stopped a cycle early (SIGINT, SIGTERM), so that history tells an interrupted cycle from a failed one; and
    the pid of the process running a cycle, so that status tells a cycle still running from one that died."""
    db.executescript("""
        ALTER TABLE cycles ADD COLUMN interrupted TEXT;
        ALTER TABLE cycles ADD COLUMN pid INTEGER;
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('retry', 'backfill')),
            args TEXT NOT NULL,
            requested_at REAL NOT NULL,
            done_at REAL,
            outcome TEXT
        );
        CREATE TABLE flow_pauses (flow TEXT PRIMARY KEY, at REAL NOT NULL);
    """)


def pending_steps(conn: sqlite3.Connection, path: Path) -> int:
    """How many migrations this syncd would apply to the database on `conn`. A database written by a newer
    syncd (a step this one does not know) is refused, as is a file of syncd's tables without a schema record:
    reading either with this code would misread it."""
    db = Database(conn)
    applied = [m.name for m in migrations.applied(db)]
    known = [m.name for m in migrations.pending(Database(memory=True))]
    if unknown := [name for name in applied if name not in known]:
        raise StoreError(
            f"{path} was written by a newer syncd (schema step {unknown[0]!r} is unknown to this one). Nothing was "
            "read or changed: run the newer syncd, or point [state] path at another file."
        )
    if not applied and db.table_names():
        raise StoreError(
            f"{path} holds tables but no syncd schema record, so it is not a database this syncd can read or "
            "upgrade. Point [state] path at a new file (it starts with a baseline), or restore a backup."
        )
    return len(known) - len(applied)


def refuse_empty(path: Path) -> None:
    """A zero-byte database is a lost file (a failed copy, a truncation), not a fresh start: a new baseline
    over it would silently give no project to every deal that qualified meanwhile."""
    if path.is_file() and path.stat().st_size == 0 and not Path(f"{path}-wal").is_file():
        raise StoreError(
            f"{path} is empty (0 bytes): its state is lost, and syncd will not start over silently. Restore a "
            "backup (safe: syncd checks Asana before any create), or delete the file to start again with a baseline."
        )


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None)
    else:
        # check_same_thread=False: `syncd run` opens the store once and cycles in one scheduler thread at a time.
        conn = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn
