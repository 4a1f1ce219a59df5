"""Alembic, driven from code: every service keeps its revisions in ``<package>/migrations``.

A service's ``env.py`` is just ``run_migrations(Base.metadata)``; ``upgrade`` and ``revision`` are
what ``vigil-<service> migrate`` and ``vigil-<service> revision`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic import op as alembic_op
from alembic.config import Config
from alembic.operations import Operations

from .db import build_engine
from .schema_spec import create_tables, drop_tables

log = logging.getLogger("vigil.migrations")

BATCH_TABLE_PREFIX = "_alembic_tmp_"  # alembic's name for the copy a batch_alter_table rebuild fills


@sa.event.listens_for(sa.Table, "after_create")
def _carry_the_id_sequence_over(table: sa.Table, connection: sa.Connection, **_kw: Any) -> None:
    """A ``batch_alter_table`` rebuild on SQLite keeps the table's next id, not just its rows.

    The copy's ``AUTOINCREMENT`` counter would start at the highest id copied, so the ids of the
    newest deleted rows would be handed out again after any later migration that rebuilds the table.
    The counter is copied before the rows (SQLite renames it with the table).
    """
    if connection is None or connection.dialect.name != "sqlite" or not table.name.startswith(BATCH_TABLE_PREFIX):
        return
    original = table.name[len(BATCH_TABLE_PREFIX) :]
    seq = connection.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": original}).scalar()
    if seq and table.autoincrement_column is not None:
        connection.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"), {"t": table.name, "seq": seq}
        )


def alembic_config(package: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.attributes["database_url"] = database_url
    return config


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(package, database_url), revision)


def downgrade(package: str, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(package, database_url), revision)


def revision(package: str, database_url: str, message: str) -> None:
    command.revision(alembic_config(package, database_url), message=message, autogenerate=True)


def run_migrations(metadata: sa.MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    url = context.config.attributes["database_url"]
    engine = build_engine(url, bounded_waits=False)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                broken_before = _foreign_keys_off(connection)
            context.configure(
                connection=connection, target_metadata=metadata, render_as_batch=sqlite, compare_type=True
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                _foreign_keys_on(connection, broken_before)
    finally:  # a refused migration leaves no connection open either
        engine.dispose()


def vacuum_analyze(op: Operations | ModuleType, *tables: str) -> None:
    """``VACUUM (ANALYZE)`` of ``tables`` on PostgreSQL, for a migration that rewrote many of their rows,
    outside its transaction (what it did so far is committed first: alembic's ``autocommit_block``).

    Until a vacuum, pages a migration rewrote are not marked all-visible, so an index-only scan reads
    the table for each index entry, and the planner keeps the old rows' statistics; autovacuum comes
    when it comes. At 1,000,000 customers, right after customer migration 0012 a common fragment's
    search took 59-70 ms p50 (89-96 ms p95) against 7.2 ms (12.1) before it
    (``bench/bench_customer_search.py``). A failed vacuum is logged with what to run by hand: the
    migration's work stands either way."""
    context_ = op.get_context()
    if context_.dialect.name != "postgresql":
        return
    with context_.autocommit_block():
        bind = op.get_bind()
        for table in tables:
            try:
                bind.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
            except sa.exc.DBAPIError as exc:
                log.warning(
                    "VACUUM (ANALYZE) %s failed (%s); run it by hand soon: searches are slower until then", table, exc
                )


def _foreign_keys_off(connection: sa.Connection) -> set[Any]:
    """SQLite's own recipe for changing tables: foreign keys off while tables are rebuilt, checked after.

    A rebuild (``batch_alter_table``) drops the old table, and with foreign keys on, dropping
    ``users`` would first delete every row referring to it (``ON DELETE CASCADE``). The pragma only
    takes effect outside a transaction, hence the commits around it. Returns the rows that already
    pointed nowhere, so only what a migration broke is reported afterwards.
    """
    connection.commit()
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    broken = set(connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall())
    connection.commit()
    return broken


def _foreign_keys_on(connection: sa.Connection, broken_before: set[Any]) -> None:
    connection.commit()
    broken = set(connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) - broken_before
    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    connection.commit()
    if broken:
        raise RuntimeError(f"a migration left rows whose foreign keys point nowhere: {sorted(broken)[:10]}")


def rebuild_never_reusing_ids(op: Operations | ModuleType, tables: dict[str, list[str]]) -> None:
    """Rebuilds SQLite tables with ``AUTOINCREMENT`` so their ids are never handed out twice.

    ``tables`` maps a table to queries that each return an id the table may have used before and
    that something outside it may still name (a retained event, an audit entry); the next id is
    above all of them and above the highest id in the table. Data, indexes and constraints are
    kept; triggers are not (SQLite drops them with the table), so a caller whose table has any
    creates them again. PostgreSQL: nothing to do, a sequence never goes back.
    """
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, floor_queries in tables.items():
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
        floors = [op.get_bind().exec_driver_sql(query).scalar() for query in floor_queries]
        floor = max([int(value) for value in floors if value is not None], default=0)
        if floor:
            _raise_sequence(op, table, floor)


def never_reusing_ids_migration(tables: dict[str, list[str]]) -> tuple[Callable[[], None], Callable[[], None]]:
    """``upgrade, downgrade`` of a revision that only rebuilds ``tables`` with
    :func:`rebuild_never_reusing_ids`. Nothing to undo: older code works as well on such tables."""

    def upgrade() -> None:
        rebuild_never_reusing_ids(alembic_op, tables)

    def downgrade() -> None:
        pass

    return upgrade, downgrade


def _raise_sequence(op: Operations | ModuleType, table: str, floor: int) -> None:
    bind = op.get_bind()
    current = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).scalar()
    if current is None:
        bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"), {"t": table, "seq": floor})
    elif current < floor:
        bind.execute(sa.text("UPDATE sqlite_sequence SET seq = :seq WHERE name = :t"), {"t": table, "seq": floor})


def create_messaging_tables(op: Operations | ModuleType) -> None:
    """Outbox, inbox and idempotency tables, identical in every service (see ``messaging.outbox``)."""
    create_tables(
        op,
        """
        table outbox_events
            position                 big       pk autoinc
            event_id                 str(36)
            type                     str(100)
            version                  int
            occurred_at              datetime
            data                     json
            request_id               str(64)   null
            published_at             datetime  null
            pk_outbox_events: primary key (position)
            uq_outbox_events_event_id: unique (event_id)
            ix_outbox_events_published_at: index (published_at)
        table processed_events
            event_id                 str(36)
            type                     str(100)
            processed_at             datetime
            duplicates               int       default=0
            pk_processed_events: primary key (event_id)
        """,
    )
    create_idempotency_table(op)


def drop_messaging_tables(op: Operations | ModuleType) -> None:
    drop_idempotency_table(op)
    drop_tables(op, "processed_events outbox_events")


def messaging_tables_migration() -> tuple[Callable[[], None], Callable[[], None]]:
    """``upgrade, downgrade`` of a service's first revision when it owns only the messaging tables."""
    return (lambda: create_messaging_tables(alembic_op)), (lambda: drop_messaging_tables(alembic_op))


def create_idempotency_table(op: Operations | ModuleType) -> None:
    """The stored answers to ``Idempotency-Key`` requests (see ``vigil_shared.idempotency``)."""
    create_tables(
        op,
        """
        table idempotency_keys
            caller                   str(100)
            key                      str(200)
            request_hash             str(64)
            state                    str(20)
            response_status          int       null
            response_body            text      null
            response_headers         json      null
            created_at, expires_at   datetime
            pk_idempotency_keys: primary key (caller, key)
            ix_idempotency_keys_expires_at: index (expires_at)
        """,
    )


def drop_idempotency_table(op: Operations | ModuleType) -> None:
    drop_tables(op, "idempotency_keys")


def create_dead_letters_table(op: Any) -> None:
    """The consumer's dead letters, identical in every service (see ``messaging.dead_letters``)."""
    create_tables(
        op,
        """
        table dead_letters
            event_id                 str(36)
            type                     str(100)
            version                  int       null
            source                   str(100)  null
            request_id               str(64)   null
            error_class              str(200)
            error_message            str(500)
            attempts                 int
            first_failed_at, last_failed_at  datetime
            retried_at               datetime  null
            message                  text      null
            pk_dead_letters: primary key (event_id)
            ix_dead_letters_last_failed_at: index (last_failed_at)
        """,
    )


def drop_dead_letters_table(op: Any) -> None:
    drop_tables(op, "dead_letters")


def dead_letters_migration() -> tuple[Callable[[], None], Callable[[], None]]:
    """``upgrade, downgrade`` of the revision that adds a service's dead letters."""
    return (lambda: create_dead_letters_table(alembic_op)), (lambda: drop_dead_letters_table(alembic_op))
