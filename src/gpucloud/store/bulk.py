"""Many-row writes for the ledger's hot path, one statement shape per database.

SQLAlchemy's per-row parameter handling costs more than the database itself at tens of thousands
of rows a second, so these compile once and hand rows straight to the driver. PostgreSQL gets a
single statement over parallel arrays (``unnest``): one round trip for a whole batch. SQLite gets
the driver's executemany; its writers are serialised (``BEGIN IMMEDIATE``), so checking for
existing keys before inserting cannot race.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update

Row = tuple[Any, ...]


def bind_value(connection: Connection, table: Table, column: str, value: Any) -> Any:
    """A value as the driver expects it (e.g. a datetime in SQLite's text form)."""
    processor = table.c[column].type.bind_processor(connection.dialect)
    return processor(value) if processor else value


def insert_new(
    connection: Connection, table: Table, columns: Sequence[str], rows: list[Row], key: str
) -> set[Any]:
    """Insert the rows whose ``key`` column is not taken yet; returns the keys inserted."""
    if not rows:
        return set()
    at = columns.index(key)
    if connection.dialect.name == "postgresql":
        sql = _unnest_insert(connection, table, columns) + f" ON CONFLICT ({key}) DO NOTHING "
        sql += f"RETURNING {key}"
        return {row[0] for row in _pg_execute(connection, sql, _arrays(rows), fetch=True)}
    taken: set[Any] = set()
    keys = [r[at] for r in rows]
    for first in range(0, len(keys), 500):
        chunk = keys[first : first + 500]
        taken |= set(
            connection.execute(select(table.c[key]).where(table.c[key].in_(chunk))).scalars()
        )
    fresh = [r for r in rows if r[at] not in taken]
    insert_all(connection, table, columns, fresh)
    return {r[at] for r in fresh}


def insert_all(
    connection: Connection, table: Table, columns: Sequence[str], rows: list[Row]
) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _pg_execute(connection, _unnest_insert(connection, table, columns), _arrays(rows))
        return
    compiled = insert(table).compile(dialect=connection.dialect, column_keys=list(columns))
    order = compiled.positiontup
    if order:
        index = [list(columns).index(name) for name in order]
        if index == list(range(len(columns))):
            ordered: Sequence[Row] = rows
        else:
            pick = operator.itemgetter(*index)  # C speed: this runs for every row
            ordered = [pick(r) for r in rows]
        connection.exec_driver_sql(compiled.string, ordered)
    else:
        connection.exec_driver_sql(
            compiled.string, [dict(zip(columns, r, strict=True)) for r in rows]
        )


def add_to(connection: Connection, table: Table, column: str, deltas: Mapping[str, int]) -> None:
    """``column += delta`` for each primary key, in key order (so concurrent batches lock rows
    in the same order and cannot deadlock). The database adds: no update is ever lost."""
    changes = sorted((k, d) for k, d in deltas.items() if d)
    if not changes:
        return
    pk = table.primary_key.columns.values()[0].name
    if connection.dialect.name == "postgresql":
        pk_type = table.c[pk].type.compile(dialect=connection.dialect)
        value_type = table.c[column].type.compile(dialect=connection.dialect)
        # An UPDATE ... FROM locks rows in whatever order its join plan visits them; taking
        # the locks first, sorted, is what keeps two concurrent batches from deadlocking (NO KEY:
        # the postings' foreign-key checks hold KEY SHARE locks on these rows, which FOR UPDATE
        # would wait for).
        _pg_execute(
            connection,
            f"SELECT 1 FROM {table.name} WHERE {pk} = ANY(%b::{pk_type}[]) "
            f"ORDER BY {pk} FOR NO KEY UPDATE",
            ([k for k, _ in changes],),
        )
        _pg_execute(
            connection,
            f"UPDATE {table.name} SET {column} = {table.name}.{column} + d.delta "
            f"FROM unnest(%b::{pk_type}[], %b::{value_type}[]) AS d(id, delta) "
            f"WHERE {table.name}.{pk} = d.id",
            _arrays(changes),
        )
        return
    statement = (
        update(table)
        .where(table.c[pk] == bindparam("row_key"))
        .values({column: table.c[column] + bindparam("delta")})
    )
    connection.execute(statement, [{"row_key": k, "delta": d} for k, d in changes])


def _pg_execute(
    connection: Connection, sql: str, params: tuple[list[Any], ...], fetch: bool = False
) -> list[Row]:
    """Run on psycopg's own cursor with binary parameters: text-format arrays make the driver
    quote-check every element with a regex, which cost more than the database's own work."""
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(sql, params, binary=True)
        return list(cursor.fetchall()) if fetch else []


def _arrays(rows: Sequence[Row]) -> tuple[list[Any], ...]:
    return tuple(list(column) for column in zip(*rows, strict=True))


def _unnest_insert(connection: Connection, table: Table, columns: Sequence[str]) -> str:
    types = [table.c[c].type.compile(dialect=connection.dialect) for c in columns]
    arrays = ", ".join(f"%b::{t}[]" for t in types)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
