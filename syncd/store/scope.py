"""Which rows of the state tables are one store's, and the connection shape both backends give the shared SQL.

SQLite keeps one database per CRM account, so a store's rows are all of them (`Scope()`). PostgreSQL keeps
every account in the same tables, keyed by account, so every statement the ledger and the read side share
ends its WHERE clause with `scope.and_` (or adds `scope.where`) and passes `scope.params` last; inserts add
`scope.column` and `scope.mark`. The shared SQL uses `?` placeholders; the PostgreSQL connection translates
them (`syncd.store.pg_schema.PgConnection`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Row(Protocol):
    """A row readable by position and by column name: `sqlite3.Row`, or `PgRow`."""

    def __getitem__(self, key: Any, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the ledger and the read side need of a connection: `sqlite3.Connection`, or `PgConnection`."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


@dataclass(frozen=True)
class Scope:
    """One account's rows (PostgreSQL), or every row (`account=None`: SQLite, one database per account)."""

    account: str | None = None

    @property
    def and_(self) -> str:
        return "" if self.account is None else " AND account = ?"

    @property
    def where(self) -> str:
        return "" if self.account is None else " WHERE account = ?"

    def of(self, alias: str) -> str:
        """`and_` for the table called `alias` in a join."""
        return "" if self.account is None else f" AND {alias}.account = ?"

    def same(self, alias: str, other: str) -> str:
        """A join's condition that two tables' rows are of one account (no parameter)."""
        return "" if self.account is None else f" AND {alias}.account = {other}.account"

    def key(self, *columns: str) -> str:
        """An upsert's conflict target: the table's key within the account."""
        return ", ".join(("account", *columns) if self.account is not None else columns)

    @property
    def params(self) -> tuple[str, ...]:
        return () if self.account is None else (self.account,)

    @property
    def column(self) -> str:
        return "" if self.account is None else ", account"

    @property
    def mark(self) -> str:
        return "" if self.account is None else ", ?"


EVERY_ROW = Scope()  # SQLite: one database per account
