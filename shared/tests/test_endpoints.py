"""``vigil_shared.endpoints``: one declaration gives the document and the wrappers the hand-written stack gave."""

import pytest
from flask import Flask
from flask.views import MethodView
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields

from vigil_shared.endpoints import Blueprint, endpoint
from vigil_shared.http import answers
from vigil_shared.idempotency import idempotent
from vigil_shared.web import VigilApi, loader_rule, record_rule, requires


class Filter(Schema):
    q = fields.String()


class Change(Schema):
    text = fields.String(required=True)


class Thing(Schema):
    id = fields.Integer()


def load(ctx, thing_id, permission):
    return {"id": thing_id, "permission": permission}


thing_rule = loader_rule(load, "thing_id", context=lambda: None)


def spec_of(blp) -> dict:
    app = Flask("endpoints-test")
    app.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.1.0")
    api = VigilApi(app)
    api.register_blueprint(blp)
    return api.spec.to_dict()


def by_hand() -> dict:
    blp = SmorestBlueprint("things", __name__, url_prefix="/things")

    class Item(MethodView):
        @requires("customers.view")
        @thing_rule("customers.view")
        @blp.arguments(Filter, location="query", as_kwargs=True)
        @blp.response(200, Thing)
        def get(self, thing_id, q=None):
            """Read a thing."""

        @requires("customers.modify")
        @thing_rule("customers.modify")
        @idempotent
        @blp.arguments(Change, required=False)
        @answers(blp, 200, Thing, conflict="Already done", stale=True)
        @blp.alt_response(422, description="Not today")
        def post(self, data, thing_id):
            """Move a thing on."""

        @requires("customers.modify")
        @record_rule(lambda thing_id, **_: load(None, thing_id, "customers.view"))
        @answers(blp, 204, stale="Nothing was deleted")
        def delete(self, thing_id):
            """Remove a thing."""

    blp.route("/<int:thing_id>")(Item)
    return spec_of(blp)


def declared() -> dict:
    blp = Blueprint("things", __name__, url_prefix="/things")

    class Item(MethodView):
        @blp.read("customers.view", Thing, rule=thing_rule, query=Filter)
        def get(self, thing_id, q=None):
            """Read a thing."""

        @blp.transition(
            "customers.modify",
            Thing,
            rule=thing_rule,
            optional_body=Change,
            conflict="Already done",
            answers={422: "Not today"},
        )
        def post(self, data, thing_id):
            """Move a thing on."""

        @blp.remove(
            "customers.modify",
            record=record_rule(lambda thing_id, **_: load(None, thing_id, "customers.view")),
            stale="Nothing was deleted",
        )
        def delete(self, thing_id):
            """Remove a thing."""

    blp.route("/<int:thing_id>")(Item)
    return spec_of(blp)


def test_one_declaration_documents_what_the_hand_written_stack_did():
    assert declared()["paths"] == by_hand()["paths"]


def test_the_view_is_the_same_chain_of_wrappers():
    """Requires, then the rule, then idempotent, then flask-smorest: built at import, nothing added per request."""
    blp = Blueprint("chain", __name__)

    def post(data, thing_id):
        return data

    view = blp.transition("customers.modify", Thing, rule=thing_rule, body=Change)(post)
    layers = []
    while view is not None:
        layers.append(view.__code__.co_filename.rsplit("/", 1)[-1] + ":" + view.__code__.co_qualname)
        view = getattr(view, "__wrapped__", None)
    assert layers[0] == "authz.py:requires.<locals>.decorator.<locals>.wrapper"
    assert layers[1] == "web.py:record_rule.<locals>.decorator.<locals>.wrapper"
    assert layers[2] == "idempotency.py:idempotent.<locals>.wrapper"
    assert layers[-1].endswith(".<locals>.post")
    assert not any(layer.startswith("endpoints.py:") for layer in layers)  # nothing of its own runs per request


def test_an_unknown_option_is_refused_at_import():
    with pytest.raises(TypeError, match="idempotnet"):
        endpoint(Blueprint("typo", __name__), "customers.view", idempotnet=True)
