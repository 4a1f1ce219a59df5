"""Notes and tickets of a record: `notes.view` to read, `notes.modify` to write, at the record's location."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers, paginate
from vigil_shared.web import request_session

from .. import commands
from .. import notes as domain
from ..child_schemas import NoteCreateSchema, NoteListArgs, NotePageSchema, NotePatchSchema, NoteSchema
from .common import A_CUSTOMER, context, if_match, loaded, tab_rule

blp = Blueprint(
    "customer_notes", __name__, url_prefix=f"{A_CUSTOMER}/notes", description="Notes and tickets of a customer or lead"
)


@blp.route("")
class Notes(MethodView):
    @blp.read("notes.view", NotePageSchema, rule=tab_rule, query=NoteListArgs)
    def get(self, customer_id, page, per_page, kind=None, status=None, open=None, assignee=None):
        """Notes and tickets, urgent ones first, then newest first. `open=true` gives the tab's count."""
        statement = domain.list_statement(customer_id, kind=kind, status=status, open_only=open, assignee=assignee)
        result = paginate(request_session(), statement, page, per_page)
        return result.body(), 200, result.headers()

    @blp.create("notes.modify", NoteSchema, rule=tab_rule, body=NoteCreateSchema)
    def post(self, data, customer_id):
        """Write a note, or a ticket (`kind: ticket`) with assignee, due date, priority and status."""
        note = commands.add_note(context(), loaded(), data)
        return (
            note,
            201,
            etag_headers(note, Location=url_for("customer_notes.NoteItem", customer_id=customer_id, note_id=note.id)),
        )


@blp.route("/<int:note_id>")
class NoteItem(MethodView):
    @blp.read("notes.view", NoteSchema, rule=tab_rule)
    def get(self, customer_id, note_id):
        """One note or ticket."""
        note = domain.get_note(request_session(), customer_id, note_id)
        return note, 200, etag_headers(note)

    @blp.change("notes.modify", NoteSchema, rule=tab_rule, body=NotePatchSchema)
    def patch(self, changes, customer_id, note_id):
        """Edit a note, or move a ticket along (status, assignee, due date, priority)."""
        note = commands.update_note(context(if_match()), loaded(), note_id, changes)
        return note, 200, etag_headers(note)

    @blp.remove("notes.modify", rule=tab_rule, stale="`If-Match` names an older version; nothing was deleted")
    def delete(self, customer_id, note_id):
        """Delete a note or ticket (the record's history keeps its text)."""
        commands.delete_note(context(if_match()), loaded(), note_id)
        return None
