"""What ``@requires`` and ``@idempotent`` add to an operation's OpenAPI entry, whatever the decorator order."""

import inspect

import pytest
from flask import Flask
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from vigil_shared import guards, web
from vigil_shared.apidoc import InternalBlueprint, declares_json_body, document, operation_doc
from vigil_shared.idempotency import idempotent
from vigil_shared.web import VigilApi, loaded, record_rule, requires

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


def things_blueprint(rule_outermost: bool, blueprint_type=Blueprint) -> Blueprint:
    """A view under ``record_rule`` and flask-smorest's decorators, the rule placed above them or below."""
    blp = blueprint_type("things", __name__, url_prefix="/things")

    class Thing(MethodView):
        def put(self, body, thing_id):
            """Replace a thing."""
            return {"id": loaded()["id"]}

    ours = [record_rule(lambda thing_id, **_: {"id": thing_id})]
    smorest = [blp.arguments(NoteIn), blp.response(200, NoteOut)]
    for decorator in reversed([*ours, *smorest] if rule_outermost else [*smorest, *ours]):
        Thing.put = decorator(Thing.put)
    blp.route("/<int:thing_id>")(Thing)
    return blp


def guarded_app(blp: Blueprint) -> Flask:
    app = Flask("apidoc-guard-test")
    app.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.1.0", MAX_CONTENT_LENGTH=65536)
    guards.install(app)
    VigilApi(app).register_blueprint(blp)
    return app


@pytest.mark.parametrize("blueprint_type", [Blueprint, InternalBlueprint])
@pytest.mark.parametrize("rule_outermost", [True, False])
def test_record_rule_and_the_required_body_do_not_depend_on_decorator_order(rule_outermost, blueprint_type):
    """The body guard reads the finished OpenAPI operation (an apispec plugin), not flask-smorest's private
    ``_apidoc``, and ``record_rule`` copies nothing of it: wherever the rule sits, the document is the same
    and a call without its JSON body answers 400; an internal blueprint's operations too, though unpublished."""

    def paths_of(app: Flask) -> dict:
        return app.extensions["flask-smorest"]["blp_name_to_api"]["things"].spec.to_dict().get("paths", {})

    app = guarded_app(things_blueprint(rule_outermost, blueprint_type))
    paths = paths_of(app)
    if blueprint_type is InternalBlueprint:
        assert paths == {}
    else:
        assert paths == paths_of(guarded_app(things_blueprint(not rule_outermost)))
        assert paths["/things/{thing_id}"]["put"]["requestBody"]["required"] is True
    assert declares_json_body(app, "things.Thing", "PUT") and not declares_json_body(app, "things.Thing", "GET")
    client = app.test_client()
    missing = client.put("/things/7")
    assert missing.status_code == 400 and missing.get_json()["errors"] == {"_body": ["Missing."]}
    answered = client.put("/things/7", json={"text": "x"})
    assert answered.status_code == 200 and answered.get_json() == {"id": 7}
    assert "_apidoc" not in inspect.getsource(guards) and "_apidoc" not in inspect.getsource(web)


def test_every_blueprint_parses_with_one_instance_of_each_argument_schema():
    from flask_smorest import Blueprint as SmorestBlueprint
    from marshmallow import Schema as MaSchema
    from marshmallow import fields as ma_fields

    from vigil_shared.apidoc import SchemaReusingParser

    class Body(MaSchema):
        name = ma_fields.String(required=True)
        count = ma_fields.Integer(load_default=1)

    parser = SmorestBlueprint.ARGUMENTS_PARSER
    assert isinstance(parser, SchemaReusingParser)
    first = parser._get_schema(Body, None)
    assert parser._get_schema(Body, None) is first and isinstance(first, Body)
    for data in ({"name": "a"}, {"name": "b", "count": 3}):
        assert first.load(data) == Body().load(data)  # a reused instance loads as a fresh one
    instance = Body()
    assert parser._get_schema(instance, None) is instance  # an instance passed is used as it is
