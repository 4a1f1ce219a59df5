"""What ``@requires`` and ``@idempotent`` add to an operation's OpenAPI entry, whatever the decorator order."""

from flask import Flask
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from vigil_shared.apidoc import document, operation_doc
from vigil_shared.idempotency import idempotent
from vigil_shared.web import VigilApi, requires

IF_MATCH = {"in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"}}


class NoteIn(Schema):
    text = fields.String(required=True)


class NoteOut(Schema):
    id = fields.Integer()


class Duplicates(Schema):
    allow_duplicates = fields.Boolean()


def if_match(view):
    return document(view, parameters=(IF_MATCH,))


def spec_of(*blueprints) -> dict:
    app = Flask("apidoc-test")
    app.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.1.0")
    api = VigilApi(app)
    for blp in blueprints:
        api.register_blueprint(blp)
    return api.spec.to_dict()


def notes_blueprint(name: str, outermost_first: bool) -> Blueprint:
    """One function view and one MethodView, decorated in the documented order or in the reverse one."""
    blp = Blueprint(name, __name__, url_prefix="/notes")

    def decorate(view, ours, smorest):
        for decorator in reversed([*ours, *smorest] if outermost_first else [*smorest, *ours]):
            view = decorator(view)
        return view

    def create(body, allow_duplicates=False):
        """Add a note."""
        return {"id": 1}

    blp.route("", methods=["POST"])(
        decorate(
            create,
            [requires("customers.modify"), idempotent, if_match],
            [
                blp.arguments(Duplicates, location="query", as_kwargs=True),
                blp.arguments(NoteIn),
                blp.response(201, NoteOut),
            ],
        )
    )

    class Note(MethodView):
        def post(self, body, note_id):
            """Replace a note."""
            return {"id": note_id}

    Note.post = decorate(
        Note.post, [requires("customers.modify"), idempotent], [blp.arguments(NoteIn), blp.response(200, NoteOut)]
    )
    blp.route("/<int:note_id>")(Note)
    return blp


def test_decorator_order_does_not_change_the_documented_operation():
    usual = spec_of(notes_blueprint("notes", outermost_first=True))["paths"]
    reversed_order = spec_of(notes_blueprint("notes", outermost_first=False))["paths"]
    assert usual == reversed_order
    for path, expected in (
        ("/notes", {"Idempotency-Key", "If-Match", "allow_duplicates"}),
        ("/notes/{note_id}", {"Idempotency-Key"}),
    ):
        operation = usual[path]["post"]
        assert operation["x-vigil-permission"] == "customers.modify" and operation["x-vigil-scope"]
        assert {p["name"] for p in operation["parameters"]} == expected, path
        assert "requestBody" in operation


def test_a_decorated_view_keeps_the_record_of_the_view_it_wraps():
    def view():
        return "ok"

    inner = if_match(view)
    outer = idempotent(inner)
    assert [p["name"] for p in operation_doc(inner).parameters] == ["If-Match"]
    assert [p["name"] for p in operation_doc(outer).parameters] == ["Idempotency-Key", "If-Match"]
    assert "_apidoc" not in vars(outer)  # flask-smorest's private record is left to flask-smorest
