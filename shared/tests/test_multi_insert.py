"""insert_together writes the rows insert_each (one executemany per table) writes, in one statement on PostgreSQL."""

from datetime import UTC, date, datetime

import pytest
from conftest import Base, messaging
from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, String, Text, event, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Mapped, mapped_column

from vigil_shared.db import UTCDateTime, utcnow
from vigil_shared.multi_insert import insert_each, insert_together


class Written(Base):
    """Every kind of column the writers meet: defaults (Python and server), times, JSON, flags."""

    __tablename__ = "multi_insert_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(30, collation="C").with_variant(String(30), "sqlite"))
    note: Mapped[str | None] = mapped_column(Text)
    flag: Mapped[bool] = mapped_column(Boolean, default=False)
    count: Mapped[int] = mapped_column(Integer, default=7, server_default="3")
    big: Mapped[int | None] = mapped_column(BigInteger)
    tier: Mapped[str] = mapped_column(String(10), server_default="basic")
    day: Mapped[date | None] = mapped_column(Date)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    doc: Mapped[dict | None] = mapped_column(JSON)


WRITTEN = Written.__table__
OUTBOX = messaging.OutboxEvent.__table__
TIMES = ("at", "occurred_at")


def rows(batch):
    return [
        {"batch": batch, "label": "b-second", "note": None, "flag": True, "big": 2**40, "day": date(2026, 1, 2),
         "doc": {"z": 1, "a": [1, "x", None], "nested": {"k": "é\"'\\"}}},
        {"batch": batch, "label": "a-first", "note": "it's; -- \n\t%s %(x)s", "flag": False, "big": None,
         "day": None, "doc": {}},
        {"batch": batch, "label": "", "note": "", "flag": False, "big": -1, "day": None, "doc": [1, 2]},
    ]  # fmt: skip


def events(batch):
    return [
        {"event_id": f"{batch}-{n}", "type": "thing.happened", "version": 1, "data": {"n": n, "note": "a \"quoted\" é"},
         "request_id": None, "occurred_at": datetime(2026, 12, 6, tzinfo=UTC)}
        for n in range(2)
    ]  # fmt: skip


def read(session, batch):
    written = session.execute(select(WRITTEN).where(WRITTEN.c.batch == batch).order_by(WRITTEN.c.id)).all()
    sent = session.execute(
        select(OUTBOX).where(OUTBOX.c.event_id.startswith(f"{batch}-")).order_by(OUTBOX.c.position)
    ).all()
    return (
        [{k: v for k, v in r._mapping.items() if k not in ("id", "batch", *TIMES)} for r in written],
        [{k: v for k, v in r._mapping.items() if k not in ("position", "event_id")} for r in sent],
        [r.at for r in written],
    )


def test_rows_written_together_are_the_rows_written_table_by_table(database):
    with database.new_session() as session:
        started = utcnow()
        insert_each(session, [(WRITTEN, rows("each")), (OUTBOX, events("each"))])
        statements = []

        def sent(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(session.get_bind(), "before_cursor_execute", sent)
        try:
            insert_together(session, [(WRITTEN, rows("together")), (OUTBOX, events("together"))])
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", sent)
        if session.get_bind().dialect.name == "postgresql":
            assert len(statements) == 1  # one round trip for both tables
        each, each_events, _ = read(session, "each")
        together, together_events, times = read(session, "together")
        assert together == each and len(together) == 3
        assert [r["label"] for r in together] == ["b-second", "a-first", ""]  # ids follow the order given
        assert (together[0]["count"], together[0]["tier"]) == (7, "basic")  # the Python default, else the server's
        assert together_events == each_events and together_events[0]["data"] == {"n": 0, "note": 'a "quoted" é'}
        assert started <= times[0] <= times[1] <= times[2] <= utcnow()
        assert all(t.tzinfo is not None for t in times)
        session.rollback()


def test_what_a_core_insert_refuses_is_refused(database):
    with database.new_session() as session:
        with pytest.raises((ValueError, StatementError)):  # a naive time (UTCDateTime; Core wraps the error)
            insert_together(session, [(WRITTEN, [{**rows("naive")[0], "at": datetime(2026, 1, 1)}])])
        session.rollback()
        if session.get_bind().dialect.name == "postgresql":
            with pytest.raises(ValueError):  # a Core INSERT would store JSON null, not SQL NULL
                insert_together(session, [(OUTBOX, [{**events("none")[0], "data": None}])])
        with pytest.raises(ValueError):  # a table twice: its ids would follow no set order
            insert_together(session, [(WRITTEN, rows("twice")[:1]), (WRITTEN, rows("twice")[1:])])
        if session.get_bind().dialect.name == "postgresql":
            with pytest.raises(ValueError):  # rows of one table with other keys (Core follows the first row's)
                insert_together(session, [(WRITTEN, [rows("gap")[0], {**rows("gap")[1], "count": 0}])])
        insert_together(session, [(WRITTEN, []), (OUTBOX, [])])  # nothing to write: nothing sent
        session.rollback()
