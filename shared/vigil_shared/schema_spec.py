"""Tables of a migration written as a short text, one column, constraint or index a line.

Every service's migrations create tables of the same few column shapes; written out as
``sa.Column(...)`` calls they were the same lines again and again. A migration now says::

    create_tables(op, '''
        table rates
            id          int       pk
            name        str(100)  null
            active      bool      default=true
            created_at, updated_at  datetime
            pk_rates: primary key (id)
            ix_rates_name: index (name)
        table rate_notes sqlite_autoincrement
            ...
    ''')

A column line is ``name type flag...``, or ``name, other, ... type flag...`` for columns alike:

- types: ``int``, ``bigint``, ``big`` (BIGINT, INTEGER on SQLite so it can autoincrement), ``str(N)``,
  ``cstr(N)`` (``str(N)`` with the binary collation "C" on PostgreSQL), ``text``, ``json``, ``bool``,
  ``date``, ``datetime`` (:class:`~vigil_shared.db.UTCDateTime`);
- flags: ``null`` (the column is NOT NULL without it), ``pk``, ``autoinc``, ``noautoinc``, ``unique``,
  ``default=V`` (a server default: ``true``/``false``, ``now`` for CURRENT_TIMESTAMP, a number or a
  ``"quoted"`` string), ``fk=table.column`` with ``ondelete=ACTION``.

A line ``name: what`` is a named table constraint or index, in the order given:
``primary key (a, b)``, ``unique (a)``, ``foreign key (a) -> table (b) [on delete ACTION]``,
``index (a, b)`` (created after the table). The text is frozen with its migration like any other code:
a column type here must keep meaning the same DDL, so types are only ever added.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.schema import SchemaItem

from .db import UTCDateTime

__all__ = [
    "add_columns",
    "column",
    "columns",
    "columns_migration",
    "create_table",
    "create_tables",
    "drop_columns",
    "drop_indexes",
    "drop_tables",
    "drop_tables_of",
    "table_items",
    "table_names",
    "tables_migration",
]

_SIZED = re.compile(r"(?P<kind>c?str)\((?P<size>\d+)\)$")
_NAMED = re.compile(r"(?P<name>\w+):\s*(?P<what>.+)$")
_PRIMARY = re.compile(r"primary key \((?P<cols>[^)]*)\)$")
_UNIQUE = re.compile(r"unique \((?P<cols>[^)]*)\)$")
_INDEX = re.compile(r"index \((?P<cols>[^)]*)\)$")
_FOREIGN = re.compile(
    r"foreign key \((?P<cols>[^)]*)\) -> (?P<table>\w+) \((?P<refs>[^)]*)\)(?: on delete (?P<ondelete>[\w ]+))?$"
)


def _type(spec: str) -> Any:
    simple = {
        "int": sa.Integer(),
        "bigint": sa.BigInteger(),
        "big": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        "text": sa.Text(),
        "json": sa.JSON(),
        "bool": sa.Boolean(),
        "date": sa.Date(),
        "datetime": UTCDateTime(),
    }
    if spec in simple:
        return simple[spec]
    sized = _SIZED.match(spec)
    if sized is None:
        raise ValueError(f"unknown column type {spec!r}")
    size = int(sized["size"])
    if sized["kind"] == "cstr":
        return sa.String(size, collation="C").with_variant(sa.String(size), "sqlite")
    return sa.String(size)


def _server_default(value: str) -> Any:
    if value in ("true", "false"):
        return sa.true() if value == "true" else sa.false()
    if value == "now":
        return sa.text("CURRENT_TIMESTAMP")
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    if value.isdigit():
        return value
    raise ValueError(f"unknown server default {value!r}")


def _named_columns(line: str) -> list[sa.Column[Any]]:
    """A ``name, other, ... type flag...`` line: one column per name, all alike."""
    words = line.split()
    count = 1
    while words[count - 1].endswith(","):
        count += 1
    rest = " ".join(words[count:])
    return [column(f"{name.rstrip(',')} {rest}") for name in words[:count]]


def column(line: str) -> sa.Column[Any]:
    """One ``name type flag...`` line as a column."""
    name, type_spec, *flags = line.split()
    args: list[Any] = [name, _type(type_spec)]
    kwargs: dict[str, Any] = {"nullable": False}
    ondelete = None
    for flag in flags:
        key, _, value = flag.partition("=")
        if key == "ondelete":
            ondelete = value.replace("_", " ")
    for flag in flags:
        key, _, value = flag.partition("=")
        if key == "null":
            kwargs["nullable"] = True
        elif key == "pk":
            kwargs["primary_key"] = True
        elif key in ("autoinc", "noautoinc"):
            kwargs["autoincrement"] = key == "autoinc"
        elif key == "unique":
            kwargs["unique"] = True
        elif key == "default":
            kwargs["server_default"] = _server_default(value)
        elif key == "fk":
            args.append(sa.ForeignKey(value, ondelete=ondelete))
        elif key != "ondelete":
            raise ValueError(f"unknown column flag {flag!r} in {line!r}")
    return sa.Column(*args, **kwargs)


def _lines(spec: str) -> list[str]:
    return [line.strip() for line in spec.strip().splitlines() if line.strip()]


def _names(cols: str) -> list[str]:
    return [name.strip() for name in cols.split(",")]


def table_items(spec: str) -> tuple[list[SchemaItem], list[tuple[str, list[str]]]]:
    """The columns and constraints of ``spec`` in its order, and its ``(name, columns)`` indexes."""
    items: list[SchemaItem] = []
    indexes: list[tuple[str, list[str]]] = []
    for line in _lines(spec):
        named = _NAMED.match(line)
        if named is None:
            items.extend(_named_columns(line))
            continue
        name, what = named["name"], named["what"]
        if found := _PRIMARY.match(what):
            items.append(sa.PrimaryKeyConstraint(*_names(found["cols"]), name=name))
        elif found := _UNIQUE.match(what):
            items.append(sa.UniqueConstraint(*_names(found["cols"]), name=name))
        elif found := _FOREIGN.match(what):
            refs = [f"{found['table']}.{ref}" for ref in _names(found["refs"])]
            items.append(sa.ForeignKeyConstraint(_names(found["cols"]), refs, name=name, ondelete=found["ondelete"]))
        elif found := _INDEX.match(what):
            indexes.append((name, _names(found["cols"])))
        else:
            raise ValueError(f"unknown table item {line!r}")
    return items, indexes


def columns(spec: str) -> list[sa.Column[Any]]:
    return [found for line in _lines(spec) for found in _named_columns(line)]


def create_table(op: Any, name: str, spec: str, **table_kwargs: Any) -> sa.Table:
    """``op.create_table`` of ``spec``'s columns and constraints, then its indexes in order."""
    items, indexes = table_items(spec)
    table = op.create_table(name, *items, **table_kwargs)
    for index, cols in indexes:
        op.create_index(index, name, cols)
    return table  # type: ignore[no-any-return]


def table_names(spec: str) -> list[str]:
    """The tables of ``spec``'s ``table name`` sections, in order."""
    return [line.split()[1] for line in _lines(spec) if line.startswith("table ")]


def tables_migration(spec: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """``upgrade, downgrade`` of a revision that only creates ``spec``'s tables: the downgrade drops
    them again, last created first."""
    from alembic import op

    return (lambda: create_tables(op, spec)), (lambda: drop_tables_of(op, spec))


def drop_tables_of(op: Any, spec: str) -> None:
    """Drops the tables ``spec`` creates, last created first."""
    drop_tables(op, " ".join(reversed(table_names(spec))))


def create_tables(op: Any, spec: str) -> None:
    """:func:`create_table` of each ``table name [sqlite_autoincrement]`` section of ``spec``, in order."""
    sections: list[tuple[list[str], list[str]]] = []
    for line in _lines(spec):
        if line.startswith("table "):
            sections.append((line.split()[1:], []))
        elif not sections:
            raise ValueError(f"a column before any table: {line!r}")
        else:
            sections[-1][1].append(line)
    for (name, *options), lines in sections:
        create_table(op, name, "\n".join(lines), **{option: True for option in options})


def add_columns(batch: Any, spec: str) -> None:
    """``batch.add_column`` of each column line (in a ``batch_alter_table``), then its indexes."""
    for line in _lines(spec):
        named = _NAMED.match(line)
        if named is None:
            for added in _named_columns(line):
                batch.add_column(added)
        elif found := _INDEX.match(named["what"]):
            batch.create_index(named["name"], _names(found["cols"]))
        else:
            raise ValueError(f"only columns and indexes are added here: {line!r}")


def columns_migration(table: str, spec: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """``upgrade, downgrade`` of a revision that only adds ``spec``'s columns (and indexes) to ``table``:
    the downgrade drops them again, last added first."""
    from alembic import op

    def upgrade() -> None:
        with op.batch_alter_table(table) as batch:
            add_columns(batch, spec)

    def downgrade() -> None:
        with op.batch_alter_table(table) as batch:
            for line in reversed(_lines(spec)):
                named = _NAMED.match(line)
                if named is not None:
                    batch.drop_index(named["name"])
                else:
                    drop_columns(batch, " ".join(added.name for added in reversed(_named_columns(line))))

    return upgrade, downgrade


def drop_columns(batch: Any, names: str) -> None:
    """``batch.drop_column`` of each whitespace-separated name, in order."""
    for name in names.split():
        batch.drop_column(name)


def drop_indexes(batch: Any, names: str) -> None:
    """``batch.drop_index`` of each whitespace-separated name, in order."""
    for name in names.split():
        batch.drop_index(name)


def drop_tables(op: Any, names: str) -> None:
    """Drops the whitespace-separated tables in order; their indexes go with them."""
    for name in names.split():
        op.drop_table(name)
