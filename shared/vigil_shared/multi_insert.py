"""Rows for several tables written by one statement on PostgreSQL (one round trip instead of one each).

A write that ends with rows in a few tables (a created customer's history, search terms and outbox
row) paid, per table, SQLAlchemy's execution path and psycopg's pipelined ``executemany``: together
about a fifth of a create's CPU (bench/bench_customer_create.py). :func:`insert_together` sends them
as data-modifying ``WITH`` clauses, each table's rows as one JSON parameter read by
``json_to_recordset``, in one fixed statement per shape (cached here and by psycopg). Elsewhere
(SQLite: no data-modifying ``WITH``, and no round trip to save) it is :func:`insert_each`: one
``executemany`` of ``insert(table)`` per table, the statements it replaces.

The rows are the rows :func:`insert_each` writes (``test_multi_insert`` compares them on PostgreSQL):
a column a row leaves out gets the column's Python default as a Core ``INSERT`` computes it (once
per row), else its server default or ``NULL``; values pass the column type's ``process_bind_param``
(``UTCDateTime`` refuses naive times); ids are taken in the order of the rows. Not for JSON columns
holding ``None`` (Core stores JSON ``null`` there, this would store SQL ``NULL``): refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Integer, Table, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator, TypeEngine

Rows = Sequence[Mapping[str, Any]]
_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]  # quotes names as the statements need


def insert_each(session: Session, writes: Sequence[tuple[Table, Rows]]) -> None:
    """Each table's rows by one ``executemany`` of ``insert(table)``, in the order given."""
    for table, rows in writes:
        if rows:
            session.execute(insert(table), list(rows))


def insert_together(session: Session, writes: Sequence[tuple[Table, Rows]]) -> None:
    """The rows of every table in ``writes`` as :func:`insert_each` writes them, on PostgreSQL by
    one statement. Keys of a row are column keys, the same in
    every row of a table; a table appears once (the order in which
    PostgreSQL runs the ``WITH`` clauses is its own, so two writes to one table would take ids in
    no set order)."""
    writes = [(table, rows) for table, rows in writes if rows]
    if not writes:
        return
    if len({table for table, _ in writes}) != len(writes):
        raise ValueError("insert_together: each table once (its rows in the order they take ids)")
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        insert_each(session, writes)
        return
    shapes = []
    params = {}
    for i, (table, rows) in enumerate(writes):
        given = frozenset(rows[0])
        if any(frozenset(row) != given for row in rows):  # Core's executemany follows the first row's keys
            raise ValueError(f"insert_together: the rows of {table.name} differ in their keys")
        columns, converters = _shape(table, given, connection.dialect)
        shapes.append((table, columns))
        params[f"rows{i}"] = _ENCODE([_json_row(converters, row) for row in rows])
    connection.exec_driver_sql(_statement(tuple(shapes)), params)


# A value of each column as JSON: its key in a row (None: the Python default, computed per row), its
# name in the JSON object, and what turns it into a JSON value (None: itself).
Converter = tuple[str | None, str, Callable[[], Any] | None, Callable[[Any], Any] | None]


@functools.lru_cache(maxsize=64)
def _shape(table: Table, given: frozenset[str], dialect: Any) -> tuple[tuple[str, ...], tuple[Converter, ...]]:
    """The columns written for rows holding the keys ``given`` (theirs, and those with a Python default),
    with each one's converter, worked out once per table and keys: per value, it was a twentieth of a
    create's CPU."""
    columns = tuple(c for c in table.columns if c.key in given or (c.default is not None and not c.primary_key))
    return tuple(c.key for c in columns), tuple(_converter(column, column.key in given, dialect) for column in columns)


def _converter(column: Any, given: bool, dialect: Any) -> Converter:
    default = None
    if not given:  # as a Core INSERT fills it in: the Python default, computed for this row
        value = column.default
        default = (lambda: value.arg) if value.is_scalar else (lambda: value.arg(None))
    steps: list[Callable[[Any], Any]] = []
    if isinstance(column.type, TypeDecorator):
        bind = column.type.process_bind_param
        steps.append(lambda v: bind(v, dialect))
    base = _base(column.type)
    if isinstance(base, JSON):

        def refuse_none(v: Any) -> Any:
            if v is None:
                raise ValueError(f"{column}: a JSON column's None is stored as JSON null by a Core INSERT")
            return v

        steps.append(refuse_none)
    elif isinstance(base, DateTime | Date):  # as text here: the encoder calling _iso per value cost more
        steps.append(lambda v: v.isoformat() if isinstance(v, date) else v)
    return (column.key if given else None, column.name, default, _chain(steps))


def _chain(steps: list[Callable[[Any], Any]]) -> Callable[[Any], Any] | None:
    if len(steps) < 2:
        return steps[0] if steps else None
    first, second = steps
    return lambda v: second(first(v))


def _json_row(converters: Sequence[Converter], row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, name, default, convert in converters:
        value = default() if default is not None else row[key]  # type: ignore[index]
        out[name] = value if convert is None else convert(value)
    return out


def _iso(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not written as JSON: {type(value).__name__}")


_ENCODE = json.JSONEncoder(default=_iso).encode


def _base(kind: TypeEngine[Any]) -> TypeEngine[Any]:
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _sql_type(kind: TypeEngine[Any]) -> str:
    """The type a JSON value is read as before the insert casts it to the column's own type (text for
    every string: a length or collation is the column's, checked by the insert as always)."""
    base = _base(kind)
    for python_type, name in (
        (BigInteger, "bigint"),
        (Integer, "integer"),
        (Boolean, "boolean"),
        (JSON, "json"),
        (DateTime, "timestamptz" if getattr(base, "timezone", False) else "timestamp"),
        (Date, "date"),
    ):
        if isinstance(base, python_type):
            return name
    return "text"


@functools.lru_cache(maxsize=64)
def _statement(shapes: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """``WITH w0 AS (INSERT … SELECT … FROM json_to_recordset(%(rows0)s)), … INSERT …`` for the tables
    and columns given, rows in the order given (``WITH ORDINALITY``: ids follow it)."""
    quote = _POSTGRESQL.identifier_preparer
    parts = []
    for i, (table, keys) in enumerate(shapes):
        columns = [table.columns[key] for key in keys]
        names = ", ".join(quote.quote(c.name) for c in columns)
        definitions = ", ".join(f"{quote.quote(c.name)} {_sql_type(c.type)}" for c in columns)
        parts.append(
            f"INSERT INTO {quote.format_table(table)} ({names}) SELECT {names} FROM ROWS FROM "
            f"(json_to_recordset(%(rows{i})s::json) AS ({definitions})) WITH ORDINALITY "
            f"AS r{i}({names}, vigil_row) ORDER BY vigil_row"
        )
    *first, last = parts
    if not first:
        return last
    return "WITH " + ", ".join(f"w{i} AS ({part})" for i, part in enumerate(first)) + " " + last
