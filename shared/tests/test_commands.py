"""Commands run without Flask, in one transaction, and check rights on the context they are given."""

import pytest
from flask import has_app_context
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vigil_shared.commands import Context, command, refuse_on_record
from vigil_shared.db import Database, ServiceTables, service_metadata
from vigil_shared.errors import Problem, not_found
from vigil_shared.identity import Identity


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


CLERK = Identity(subject="7", username="clerk", locations={1: frozenset({"customers.modify"})})


@pytest.fixture()
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/things.db")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def names(db) -> list[str]:
    with db.new_session() as session:
        return list(session.scalars(select(Thing.name).order_by(Thing.id)))


@command
def add(ctx: Context, name: str, location_id: int) -> Thing:
    ctx.require("customers.modify", location_id)
    thing = Thing(name=name)
    ctx.session.add(thing)
    ctx.session.flush()
    if name == "bad":
        raise Problem(422, "No bad things.")
    return thing


@command
def add_two(ctx: Context, first: str, second: str) -> None:
    add(ctx, first, 1)
    add(ctx, second, 1)


def test_a_command_commits_on_return_without_any_flask_context(db):
    assert not has_app_context()
    with db.new_session() as session:
        add(Context(session=session, identity=CLERK), "lamp", 1)
    assert names(db) == ["lamp"]


def test_a_failing_command_leaves_nothing_and_commands_composed_commit_once(db):
    with db.new_session() as session:
        ctx = Context(session=session, identity=CLERK)
        with pytest.raises(Problem):
            add_two(ctx, "chair", "bad")
        assert names(db) == []
        add_two(ctx, "chair", "desk")
    assert names(db) == ["chair", "desk"]


def test_rights_are_checked_by_the_command_at_the_record_location(db):
    with db.new_session() as session:
        ctx = Context(session=session, identity=CLERK)
        with pytest.raises(Problem) as refused:
            add(ctx, "lamp", 2)
        assert refused.value.status == 403
        with pytest.raises(Problem) as unplaced:
            ctx.require("customers.modify", None, field="location_id")
        assert unplaced.value.errors == {
            "location_id": ["You need the 'customers.modify' permission to set this field."]
        }
        assert ctx.can("customers.modify") and not ctx.can("customers.delete")
    assert names(db) == []


def test_version_check_after_commit_actions_and_source(db):
    with db.new_session() as session:
        ctx = Context(session=session, identity=CLERK, if_match='"5.2"')
        ctx.check_version(5, 2)
        with pytest.raises(Problem) as stale:
            ctx.check_version(5, 3)
        assert stale.value.status == 412
        done = []

        @command
        def then_note(ctx: Context, fail: bool) -> None:
            ctx.after_commit(lambda: done.append(names(db)))
            add(ctx, "bad" if fail else "rug", 1)

        with pytest.raises(Problem):
            then_note(ctx, True)
        then_note(ctx, False)
    assert done == [["rug"]]
    assert ctx.source == "api"
    assert Context(session=None, identity=Identity(subject="s", username="s", kind="service")).source == "workflow"


def _refusal(identity: Identity, permission: str, location_id: int | None, missing="customer") -> Problem | None:
    try:
        refuse_on_record(identity, permission, location_id, missing)
    except Problem as problem:
        return problem
    return None


def _said(problem: Problem | None) -> tuple:
    assert problem is not None
    return (problem.status, problem.type, problem.title, problem.detail, problem.errors, problem.extra)


def test_a_record_outside_the_callers_rights_is_the_problem_of_an_unknown_id():
    clerk = Identity("u1", "clerk", locations={1: frozenset({"notes.view", "customers.view"})})
    assert _refusal(clerk, "notes.view", 1) is None
    unknown = _said(not_found("customer"))
    assert unknown[0] == 404
    # held only at another location, or no right at all where the record is: exactly an unknown id
    assert _said(_refusal(clerk, "notes.view", 2)) == unknown
    assert _said(_refusal(clerk, "leads.view", 2)) == unknown
    assert _said(_refusal(clerk, "notes.view", None)) == unknown  # a record not yet placed
    # held nowhere, by a caller with rights where the record is: what they lack names no record
    refused = _refusal(clerk, "leads.view", 1)
    assert refused is not None and refused.status == 403 and refused.extra == {"permission": "leads.view"}
    # a lookup that answers another problem for an unknown id (a create's 422) gives that one
    missing = Problem(422, "The customer does not exist.")
    assert _refusal(clerk, "notes.view", 2, missing) is missing


def test_a_service_is_refused_like_an_unknown_id_without_the_permission():
    service = Identity("service:credit", "credit", kind="service", permissions=frozenset({"customers.view"}))
    assert _refusal(service, "customers.view", 7) is None
    assert _said(_refusal(service, "notes.view", 7)) == _said(not_found("customer"))
