"""The shared request layer: what every service and the gateway answer for bad input, on a real database.

A tiny service (its own table, one blueprint) is built with ``create_service_app`` exactly like the
real ones, so each rule is proven where it lives: in the layer, not in a view.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vigil_shared import guards
from vigil_shared.config import Settings
from vigil_shared.db import Database, ServiceTables, service_metadata
from vigil_shared.errors import get_or_404
from vigil_shared.gunicorn_worker import ProblemThreadWorker, problem_http_response, refusal_of
from vigil_shared.http import check_if_match, etag_headers
from vigil_shared.messaging.celery_app import ping_broker
from vigil_shared.runtime import serve_health
from vigil_shared.testing import TEST_SECRET, identity_headers
from vigil_shared.web import create_service_app, run_checks

MAX_BODY = 256 * 1024
HUGE = "9" * 30


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


class Card(Base):
    """A versioned record, like customers and properties (optimistic locking on ``version``)."""

    __tablename__ = "rl_cards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    __mapper_args__ = {"version_id_col": version}


class Ref(Schema):
    card_id = fields.Integer()


class CardIn(Schema):
    text = fields.String(required=True)
    id = fields.Integer()
    owner_id = fields.Integer()
    related_ids = fields.List(fields.Integer())
    ref = fields.Nested(Ref)
    counter = fields.Integer(metadata={"format": "int64"})
    notes = fields.Dict(keys=fields.String(), values=fields.String())


class CardPatch(Schema):
    text = fields.String()


class CardOut(Schema):
    id = fields.Integer()
    text = fields.String()
    version = fields.Integer()


class CardArgs(Schema):
    owner_id = fields.Integer()
    q = fields.String()


def build_blueprint(db: Database, race: dict) -> Blueprint:
    blp = Blueprint("cards", __name__, url_prefix="/api/v1/cards")

    def found(session, card_id: int) -> Card:
        return get_or_404(session, Card, card_id, "card")

    @blp.route("")
    class Cards(MethodView):
        @blp.arguments(CardArgs, location="query")
        @blp.response(200, CardOut(many=True))
        def get(self, args):
            return []

        @blp.arguments(CardIn)
        @blp.response(201, CardOut)
        def post(self, data):
            session = db.request_session()
            card = Card(id=data.get("id"), text=data["text"])
            session.add(card)
            session.commit()
            return card

    @blp.route("/<int:card_id>")
    class CardItem(MethodView):
        @blp.response(200, CardOut)
        def get(self, card_id):
            return found(db.request_session(), card_id)

        @blp.arguments(CardPatch)
        @blp.response(200, CardOut)
        def patch(self, data, card_id):
            session = db.request_session()
            card = found(session, card_id)
            check_if_match(card.id, card.version)
            if race.get("barrier") is not None:
                race["barrier"].wait(timeout=10)  # both requests have read the same version
            card.text = data.get("text", card.text)
            session.commit()
            return card, 200, etag_headers(card)

    @blp.route("/<int:card_id>/touch", methods=["POST"])
    @blp.arguments(CardPatch, required=False)
    @blp.response(200, CardOut)
    def touch(data, card_id):
        return found(db.request_session(), card_id)

    @blp.route("/boom")
    @blp.response(200, CardOut)
    def boom():
        raise RuntimeError("a bug")

    return blp


@pytest.fixture(scope="module")
def race():
    return {}


@pytest.fixture(scope="module")
def service(database, race):
    Base.metadata.create_all(database.engine)
    settings = Settings.from_env(
        "gateway",
        database_url=database.url,
        internal_secret=TEST_SECRET,
        broker_url="memory://",
        log_level="WARNING",
        max_body_bytes=MAX_BODY,
    )
    app = create_service_app(
        "shared", settings, database, [build_blueprint(database, race)], {"database": database.ping}
    )
    app.config["TESTING"] = True
    yield app
    Base.metadata.drop_all(database.engine)


@pytest.fixture
def client(service, database):
    yield _Client(service.test_client())
    with database.transaction() as session:
        session.query(Card).delete()


class _Client:
    def __init__(self, client):
        self.client = client

    def open(self, method, path, headers=None, **kwargs):
        return self.client.open(path, method=method, headers=identity_headers() | (headers or {}), **kwargs)

    def __getattr__(self, method):
        return lambda path, **kwargs: self.open(method.upper(), path, **kwargs)


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.get_json()
    assert body["status"] == status
    return body


# --- ids ---------------------------------------------------------------------------------------


def test_path_ids_outside_the_column_range_are_not_found(client, service):
    adapter = service.url_map.bind("localhost")
    assert adapter.match(f"/api/v1/cards/{2**31 - 1}", method="GET")[1] == {"card_id": 2**31 - 1}
    for raw in (str(2**31), str(2**63), HUGE, "-1"):
        problem(client.get(f"/api/v1/cards/{raw}"), 404)
        problem(client.patch(f"/api/v1/cards/{raw}", json={"text": "x"}), 404)
    problem(client.get(f"/api/v1/cards/{2**31 - 1}"), 404)  # in range, and simply not there


def test_integer_fields_are_bounded_in_bodies_nested_lists_and_queries(client):
    for body, field in (
        ({"owner_id": 2**31}, "owner_id"),
        ({"owner_id": int(HUGE)}, "owner_id"),
        ({"owner_id": -(2**31) - 1}, "owner_id"),
        ({"related_ids": [1, 2**40]}, "related_ids.1"),
        ({"ref": {"card_id": 2**31}}, "ref.card_id"),
        ({"id": int(HUGE)}, "id"),
        ({"counter": 2**63}, "counter"),
    ):
        errors = problem(client.post("/api/v1/cards", json={"text": "t", **body}), 422)["errors"]
        assert field in errors, errors
    errors = problem(client.get(f"/api/v1/cards?owner_id={HUGE}"), 422)["errors"]
    assert "owner_id" in errors
    created = client.post("/api/v1/cards", json={"text": "t", "owner_id": 2**31 - 1, "counter": 2**40})
    assert created.status_code == 201, created.get_data(as_text=True)


def test_the_bounds_are_documented_in_the_openapi_document(client):
    spec = client.get("/openapi.json").get_json()
    card_in = spec["components"]["schemas"]["CardIn"]["properties"]
    assert card_in["owner_id"]["maximum"] == 2**31 - 1 and card_in["owner_id"]["minimum"] == -(2**31)
    assert card_in["counter"]["maximum"] == 2**63 - 1
    assert card_in["related_ids"]["items"]["maximum"] == 2**31 - 1


# --- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "\x01", "\x1b[31m", "\x7f", "\ud800"])
def test_control_characters_and_lone_surrogates_are_refused_in_json(client, bad):
    errors = problem(client.post("/api/v1/cards", json={"text": bad}), 422)["errors"]
    assert list(errors) == ["text"]
    errors = problem(client.post("/api/v1/cards", json={"text": "ok", "notes": {"k": [bad]}}), 422)["errors"]
    assert "notes.k.0" in errors
    problem(client.post("/api/v1/cards", json={"text": "ok", "notes": {f"k{bad}": "v"}}), 422)
    problem(client.patch("/api/v1/cards/1", json={"text": bad}), 422)


def test_control_characters_are_refused_in_queries_headers_and_paths(client):
    assert "q" in problem(client.get("/api/v1/cards?q=a%00b"), 422)["errors"]
    assert "q" in problem(client.get("/api/v1/cards?q=%01"), 422)["errors"]
    problem(client.get("/api/v1/cards?a%00=1"), 422)
    assert (
        "Idempotency-Key"
        in problem(client.post("/api/v1/cards", json={"text": "t"}, headers={"Idempotency-Key": "k\x01"}), 422)[
            "errors"
        ]
    )
    problem(client.get("/api/v1/cards/%00"), 404)


def test_tabs_and_line_breaks_are_text(client):
    created = client.post("/api/v1/cards", json={"text": "line one\r\nline\ttwo\n"})
    assert created.status_code == 201 and created.get_json()["text"] == "line one\r\nline\ttwo\n"
    assert client.get("/api/v1/cards?q=a%09b").status_code == 200


# --- structure and size --------------------------------------------------------------------------


def test_deeply_nested_json_is_refused_before_parsing(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    problem(client.post("/api/v1/cards", data=deep, content_type="application/json"), 400)
    deep_object = ('{"text": "t", "notes": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}").encode()
    problem(client.post("/api/v1/cards", data=deep_object, content_type="application/json"), 400)
    shallow = {"text": "t", "notes": {"k": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}}
    assert client.post("/api/v1/cards", json=shallow).status_code == 201


def test_json_depth_is_judged_on_structure_not_on_string_content():
    assert not guards.json_too_deep(b'{"a": "' + b"[{" * 1000 + b'"}')
    assert not guards.json_too_deep(b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')
    assert not guards.json_too_deep(b"[" * 32 + b"]" * 32)
    assert guards.json_too_deep(b"[" * 33 + b"]" * 33)
    assert not guards.json_too_deep(b"[" + b"[1]," * 5000 + b"[1]]")


def _chunked(client, size: int):
    body = json.dumps({"text": "t", "notes": {"pad": "x" * size}}).encode()
    return client.post(
        "/api/v1/cards",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )


def test_chunked_bodies_over_the_limit_are_refused_never_truncated(client):
    problem(_chunked(client, 3 * MAX_BODY), 413)
    problem(_chunked(client, MAX_BODY), 413)  # just over: werkzeug alone would cut it at the limit
    assert _chunked(client, MAX_BODY // 2).status_code == 201  # within the limit, read whole
    problem(client.post("/api/v1/cards", data=b"x" * (MAX_BODY + 1), content_type="application/json"), 413)


def test_a_body_is_required_where_the_operation_takes_one(client):
    card = client.post("/api/v1/cards", json={"text": "t"}).get_json()
    problem(client.patch(f"/api/v1/cards/{card['id']}"), 400)
    problem(client.patch(f"/api/v1/cards/{card['id']}", data=b"", content_type="application/json"), 400)
    problem(client.post("/api/v1/cards"), 400)
    assert client.patch(f"/api/v1/cards/{card['id']}", json={}).status_code == 200  # an empty change is a body
    assert client.post(f"/api/v1/cards/{card['id']}/touch").status_code == 200  # its body is optional


# --- methods and headers ---------------------------------------------------------------------------


def test_unsupported_methods_answer_405_with_the_real_methods(client):
    card = client.post("/api/v1/cards", json={"text": "t"}).get_json()
    response = client.put(f"/api/v1/cards/{card['id']}", json={"text": "x"})
    problem(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "PATCH"} <= allowed and not allowed & {"PUT", "POST", "DELETE"}


def test_a_doubled_slash_is_a_404_never_an_html_redirect_naming_the_internal_address(client):
    """Werkzeug answered ``/api/v1/cards//1`` with a 308 HTML page whose ``Location`` named the
    service's own host and port: through the gateway, the caller learnt where the services listen."""
    card = client.post("/api/v1/cards", json={"text": "t"}).get_json()
    for path in (f"/api/v1/cards//{card['id']}", f"/api/v1//cards/{card['id']}", "/api/v1//cards"):
        response = client.get(path)
        problem(response, 404)
        assert "Location" not in response.headers


def test_every_response_carries_nosniff(client, service):
    card = client.post("/api/v1/cards", json={"text": "t"})
    responses = [
        card,
        client.get(f"/api/v1/cards/{card.get_json()['id']}"),
        client.get("/api/v1/nothing"),
        client.get("/api/v1/cards/boom"),
        service.test_client().get("/api/v1/cards"),
        service.test_client().get("/healthz"),
        service.test_client().get("/readyz"),
    ]
    assert [r.headers.get("X-Content-Type-Options") for r in responses] == ["nosniff"] * len(responses)
    assert responses[3].status_code == 500 and responses[4].status_code == 401


# --- concurrency -----------------------------------------------------------------------------------


def _race(service, race, card_id: int, headers: dict) -> list[int]:
    race["barrier"] = threading.Barrier(2)
    statuses = []

    def patch(text):
        response = service.test_client().patch(
            f"/api/v1/cards/{card_id}", json={"text": text}, headers=identity_headers() | headers
        )
        statuses.append((response.status_code, response.mimetype))

    try:
        threads = [threading.Thread(target=patch, args=(text,)) for text in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        race["barrier"] = None
    return sorted(statuses)


def test_two_concurrent_patches_one_wins_the_other_gets_409(client, service, race):
    card = client.post("/api/v1/cards", json={"text": "t"}).get_json()
    assert _race(service, race, card["id"], {}) == [(200, "application/json"), (409, "application/problem+json")]
    assert client.get(f"/api/v1/cards/{card['id']}").get_json()["version"] == 2


def test_two_concurrent_patches_with_if_match_the_loser_gets_412(client, service, race):
    card = client.post("/api/v1/cards", json={"text": "t"}).get_json()
    statuses = _race(service, race, card["id"], {"If-Match": f'"{card["id"]}.1"'})
    assert statuses == [(200, "application/json"), (412, "application/problem+json")]


def test_a_duplicate_key_the_view_did_not_foresee_is_a_409(client):
    assert client.post("/api/v1/cards", json={"text": "t", "id": 77}).status_code == 201
    body = problem(client.post("/api/v1/cards", json={"text": "t", "id": 77}), 409)
    assert "rl_cards" not in json.dumps(body) and "INSERT" not in json.dumps(body)


# --- readiness -------------------------------------------------------------------------------------


def _dead_broker() -> None:
    settings = Settings.from_env("gateway", internal_secret=TEST_SECRET, broker_url="amqp://guest:guest@127.0.0.1:9//")
    ping_broker(settings, timeout=0.5)


def test_web_readiness_needs_the_database_only_and_reports_the_broker_degraded(database):
    settings = Settings.from_env(
        "gateway", database_url=database.url, internal_secret=TEST_SECRET, broker_url="memory://", log_level="WARNING"
    )
    app = create_service_app("shared", settings, database, [], {"database": database.ping, "broker": _dead_broker})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "degraded" and body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["broker"]["status"] == "degraded"

    def dead_database():
        raise ConnectionError("down")

    app = create_service_app("shared", settings, database, [], {"database": dead_database, "broker": _dead_broker})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["database"]["status"] == "unavailable"


def test_workers_and_relays_still_need_the_broker(database):
    report, ready = run_checks({"database": database.ping, "broker": _dead_broker})
    assert not ready and report["broker"]["status"] == "unavailable"
    server = serve_health("127.0.0.1", 0, "shared-worker", {"database": database.ping, "broker": _dead_broker})
    try:
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/readyz", timeout=10)
        assert refused.value.code == 503
        assert refused.value.headers["X-Content-Type-Options"] == "nosniff"
        refused.value.close()
    finally:
        server.shutdown()
        server.server_close()


# --- gunicorn's own refusals -------------------------------------------------------------------------


def test_gunicorn_refusals_are_problem_json():
    from gunicorn.http import errors as http_errors

    assert refusal_of(http_errors.LimitRequestLine(20000, 4094))[0] == 414
    assert refusal_of(http_errors.LimitRequestHeaders("limit request headers fields size"))[0] == 431
    assert refusal_of(http_errors.InvalidHeader("X-A\x00"))[0] == 400
    assert refusal_of(RuntimeError("bug"))[0] == 500
    raw = problem_http_response(431, "The request headers are too large or too many.", "abc")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Content-Type: application/problem+json" in head and b"X-Content-Type-Options: nosniff" in head
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": "The request headers are too large or too many.",
        "request_id": "abc",
    }


def test_the_access_lines_timestamp_is_the_isoformat_of_its_time():
    """The formatter keeps each second's text: every time still reads as ``datetime.isoformat`` did,
    rounding to the microsecond included (up into the next second too)."""
    import random
    from datetime import UTC, datetime

    from vigil_shared.logs import JsonFormatter

    formatter = JsonFormatter("test")
    moments = [0.0, 1.0, 1.5, 1_700_000_000.0, 1_700_000_000.9999996, 1_700_000_000.0000004, 1_700_000_001.000001]
    rng = random.Random(7)
    moments += [rng.uniform(0, 4e9) for _ in range(20_000)]
    moments += [rng.randint(0, 4_000_000_000) + rng.choice((0.9999995, 0.9999996, 0.0000005)) for _ in range(2_000)]
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
        assert formatter._timestamp(moment) == expected, moment


def test_a_new_request_id_is_a_uuid4_in_hex():
    import uuid

    from vigil_shared.web import new_request_id, request_id_of

    made = {new_request_id() for _ in range(2_000)}
    assert len(made) == 2_000
    for request_id in made:
        parsed = uuid.UUID(hex=request_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == request_id
    assert request_id_of("bad id!") != "bad id!" and uuid.UUID(hex=request_id_of("")).version == 4


def test_a_web_worker_beats_its_heartbeat_at_most_once_a_second(monkeypatch):
    """gthread beat on every turn of its event loop (a system call, twice a kept-alive request); the
    arbiter needs one beat within its timeout."""
    beats: list[float] = []
    worker = ProblemThreadWorker.__new__(ProblemThreadWorker)
    worker.tmp = type("Tmp", (), {"notify": lambda self: beats.append(clock[0])})()
    clock = [100.0]
    monkeypatch.setattr("vigil_shared.gunicorn_worker.time.monotonic", lambda: clock[0])
    for step in range(30):  # 3 seconds in steps of 0.1
        clock[0] = 100.0 + step / 10
        worker.notify()
    assert beats == [100.0, 101.0, 102.0]
