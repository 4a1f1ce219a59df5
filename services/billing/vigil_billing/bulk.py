"""Writing thousands of rows with one short statement (the due job's batches, :mod:`.recurring`).

On PostgreSQL every column travels as one array parameter (in the driver's binary format) and
``unnest`` turns the arrays back into rows. The statement's text is the same whatever the number of
rows, so neither SQLAlchemy nor the driver parses a statement of 17,000 parameters for each batch
(a multi-row ``VALUES`` costs more there than in the database). Elsewhere (SQLite, the embedded
backend) the same calls are an ``executemany``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import Table, any_, bindparam, insert, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON, TypeDecorator

_PG = postgresql.dialect()


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unnest(table: Table, columns: list[str], rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``SELECT <each column> FROM unnest(<one array per column>)`` and its parameters. Numbers, dates
    and texts travel as arrays of their type; a JSON value as its text, cast back in the database."""
    params, selected, sources = {}, [], []
    for index, name in enumerate(columns):
        column_type: Any = table.c[name].type
        if isinstance(column_type, TypeDecorator):
            column_type = column_type.impl_instance
        values = [row[name] for row in rows]
        # binary, which the driver writes faster; a column of NULLs only has no type to send it as
        placeholder = f"%(c{index})b" if any(value is not None for value in values) else f"%(c{index})s"
        if isinstance(column_type, JSON):
            params[f"c{index}"] = [None if value is None else json.dumps(value) for value in values]
            sources.append(f"CAST({placeholder} AS text[])")
            selected.append(f"CAST(u.c{index} AS json)")
        else:
            params[f"c{index}"] = values
            sources.append(f"CAST({placeholder} AS {column_type.compile(dialect=_PG)}[])")
            selected.append(f"u.c{index}")
    names = ", ".join(f"c{index}" for index in range(len(columns)))
    return f"SELECT {', '.join(selected)} FROM unnest({', '.join(sources)}) AS u({names})", params


def _run(session: Session, sql: str, params: dict[str, Any], returning: bool = False) -> list[Any]:
    """Runs a statement written for psycopg (``%(name)b`` placeholders) on the session's connection,
    in its transaction."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if returning else []


def one_of(session: Session, column: Any, values: list[Any]) -> Any:
    """``column IN values`` as one array parameter on PostgreSQL (a short statement however many)."""
    if _postgres(session):
        return column == any_(bindparam("one_of", values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def insert_rows(
    session: Session, table: Table, rows: list[dict[str, Any]], returning: tuple[str, ...] = ()
) -> list[Any]:
    """Inserts ``rows`` (dicts with the same keys); returns the ``returning`` columns of each (any order)."""
    if not rows:
        return []
    columns = list(rows[0])
    if not _postgres(session):
        statement: Any = insert(table)
        if returning:
            statement = statement.returning(*(table.c[name] for name in returning))
            return list(session.execute(statement, rows).all())
        session.execute(statement, rows)
        return []
    source, params = _unnest(table, columns, rows)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) {source}"
    if returning:
        return _run(session, f"{sql} RETURNING {', '.join(returning)}", params, returning=True)
    return _run(session, sql, params)


def add_to_rows(session: Session, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
    """Adds each row's other columns to the row of that ``key`` (created with them when missing).
    Rows are taken in key order, so concurrent callers lock them in the same order."""
    rows = sorted(rows, key=lambda row: row[key])
    columns = [name for name in rows[0] if name != key]
    if _postgres(session):
        source, params = _unnest(table, [key, *columns], rows)
        added = ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in columns)
        _run(
            session,
            f"INSERT INTO {table.name} ({key}, {', '.join(columns)}) {source} "
            f"ON CONFLICT ({key}) DO UPDATE SET {added}",
            params,
        )
        return
    from sqlalchemy.dialects import sqlite

    statement: Any = sqlite.insert(table).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={name: table.c[name] + statement.excluded[name] for name in columns},
        )
    )


def update_rows(session: Session, table: Table, key: str, rows: list[dict[str, Any]], **also: Any) -> None:
    """Sets each row's other columns on the row of that ``key``, and the ``also`` values (SQL
    expressions over the table's columns, e.g. ``version=table.c.version + 1``) on all of them."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != key]
    if not _postgres(session):
        session.execute(
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({name: bindparam(f"b_{name}") for name in columns} | also),
            [{f"b_{name}": value for name, value in row.items()} for row in rows],
        )
        return
    source, params = _unnest(table, [key, *columns], rows)
    extra = {
        name: str(value.compile(dialect=_PG, compile_kwargs={"literal_binds": True})) for name, value in also.items()
    }
    sets = [f"{name} = v.c{index + 1}" for index, name in enumerate(columns)]
    sets += [f"{name} = {expression}" for name, expression in extra.items()]
    names = ", ".join(f"c{index}" for index in range(len(columns) + 1))
    _run(
        session,
        f"UPDATE {table.name} SET {', '.join(sets)} FROM ({source}) AS v({names}) WHERE {table.name}.{key} = v.c0",
        params,
    )


def table_of(model: Any) -> Table:
    return cast(Table, model.__table__)
