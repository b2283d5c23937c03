"""The PostgreSQL schema and connection: numbered migrations serialized by an advisory transaction lock, and
the connection wrapper that lets the ledger's and the read side's `?` SQL run unchanged.

Every table is keyed by account (DESIGN.md §4): many CRM accounts share one database, and each store sees only
its own rows through its `Scope`. The `leases` table holds one row per account: who may write, under which
fencing number, until when by the database's clock (`syncd.store.lease`); `workers` one row per
`syncd run --accounts` process, its heartbeat, from which each computes its fair share (`syncd.fleet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import RowMaker

from syncd.models import OP_STATES


class PgRow(tuple[Any, ...]):
    """A row readable by position and by column name, as `sqlite3.Row` is, so `syncd.store.rows` serves both."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def pg_row(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


class PgConnection:
    """One psycopg connection in autocommit mode (a write is an explicit `transaction()`), speaking the shared
    SQL: `?` placeholders become `%s`. The shared SQL holds no literal `?` or `%`."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow]:
        return self.raw.execute(sql.replace("?", "%s"), tuple(parameters))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.raw.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), rows)

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, application: str = "syncd") -> PgConnection:
    conn = psycopg.connect(url, autocommit=True, row_factory=pg_row, connect_timeout=10, application_name=application)
    return PgConnection(conn)


_STATES = ", ".join(f"'{s}'" for s in OP_STATES)

# Numbered, never edited once released: a change is a new entry at the end.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "create_tables",
        f"""
        CREATE TABLE meta (account TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (account, key));
        CREATE TABLE cursors (
            account TEXT NOT NULL, name TEXT NOT NULL,
            value_ms BIGINT NOT NULL CHECK (value_ms >= 0), updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (account, name)
        );
        CREATE TABLE deals (
            account TEXT NOT NULL, id TEXT NOT NULL, updated_at_ms BIGINT NOT NULL,
            properties TEXT NOT NULL, matches TEXT NOT NULL, entries TEXT NOT NULL DEFAULT '{{}}',
            first_seen_at DOUBLE PRECISION NOT NULL, recorded_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (account, id)
        );
        CREATE TABLE ops (
            account TEXT NOT NULL, op_key TEXT NOT NULL, flow TEXT NOT NULL, deal_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({_STATES})),
            marker TEXT NOT NULL, body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at DOUBLE PRECISION NOT NULL, last_attempt_at DOUBLE PRECISION,
            asana_gid TEXT, asana_url TEXT, job_gid TEXT, last_error TEXT, aliases TEXT NOT NULL DEFAULT '[]',
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (account, op_key), UNIQUE (account, marker), UNIQUE (account, asana_gid),
            FOREIGN KEY (account, deal_id) REFERENCES deals (account, id),
            CHECK ((state = 'created') = (asana_gid IS NOT NULL)),
            CHECK (state = 'pending' OR last_attempt_at IS NOT NULL OR state = 'dead')
        );
        CREATE INDEX ops_pending ON ops (account, next_attempt_at) WHERE state = 'pending';
        CREATE INDEX ops_unknown ON ops (account, last_attempt_at) WHERE state = 'unknown';
        CREATE INDEX ops_deal ON ops (account, deal_id);
        CREATE TABLE effects (
            account TEXT NOT NULL, effect_key TEXT NOT NULL, op_key TEXT NOT NULL, seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('template', 'task', 'writeback', 'notify')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'unknown', 'done', 'dead')),
            body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL, last_attempt_at DOUBLE PRECISION,
            result TEXT, last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (account, effect_key), UNIQUE (account, op_key, seq),
            FOREIGN KEY (account, op_key) REFERENCES ops (account, op_key)
        );
        CREATE INDEX effects_due ON effects (account, state, next_attempt_at);
        CREATE TABLE events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL,
            ledger TEXT NOT NULL CHECK (ledger IN ('ops', 'effects')), key TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, detail TEXT
        );
        CREATE INDEX events_key ON events (account, ledger, key, id);
        CREATE TABLE deal_versions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL, deal_id TEXT NOT NULL,
            updated_at_ms BIGINT NOT NULL, properties TEXT NOT NULL, matches TEXT NOT NULL, newly TEXT NOT NULL,
            recorded_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX deal_versions_deal ON deal_versions (account, deal_id, updated_at_ms);
        CREATE TABLE quarantine (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL, record_id TEXT,
            reason TEXT NOT NULL, excerpt TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX quarantine_record ON quarantine (account, record_id);
        CREATE TABLE cycles (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, ok INTEGER, error TEXT,
            deals_seen INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX cycles_account ON cycles (account, id);
        CREATE TABLE flow_baselines (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL, flow TEXT NOT NULL,
            rule TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL
        );
        CREATE INDEX flow_baselines_flow ON flow_baselines (account, flow, id);
        """,
    ),
    (
        "leases",
        """
        CREATE TABLE leases (
            account TEXT PRIMARY KEY, holder TEXT NOT NULL, fence BIGINT NOT NULL CHECK (fence > 0),
            acquired_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL,
            previous_holder TEXT, previous_expiry TIMESTAMPTZ, previous_clean BOOLEAN NOT NULL DEFAULT TRUE,
            clean BOOLEAN NOT NULL DEFAULT FALSE
        );
        """,
    ),
    (
        "doubts_requests_pauses",
        """
        ALTER TABLE ops ADD COLUMN doubt TEXT;
        ALTER TABLE effects ADD COLUMN doubt TEXT;
        ALTER TABLE cycles ADD COLUMN interrupted TEXT;
        ALTER TABLE cycles ADD COLUMN pid INTEGER;
        CREATE TABLE requests (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('retry', 'backfill')), args TEXT NOT NULL,
            requested_at DOUBLE PRECISION NOT NULL, done_at DOUBLE PRECISION, outcome TEXT
        );
        CREATE INDEX requests_open ON requests (account, id) WHERE done_at IS NULL;
        CREATE TABLE flow_pauses (
            account TEXT NOT NULL, flow TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, PRIMARY KEY (account, flow)
        );
        """,
    ),
    (
        "workers",
        """
        CREATE TABLE workers (
            worker TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL, accounts INTEGER NOT NULL DEFAULT 0
        );
        """,
    ),
)


def migrate(conn: PgConnection) -> None:
    """Apply the migrations this database lacks, in order, in one transaction. Processes that open
    the same database at once queue on one advisory lock (per schema), so each migration runs exactly once."""
    raw = conn.raw
    with raw.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncd migrations ' || current_schema()))")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS syncd_migrations (
                   number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT number FROM syncd_migrations")}
        for number, (name, sql) in enumerate(MIGRATIONS, 1):
            if number not in done:
                raw.execute(sql)
                conn.execute("INSERT INTO syncd_migrations (number, name) VALUES (?, ?)", (number, name))
