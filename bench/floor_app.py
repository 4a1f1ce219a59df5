"""The floor a property read is measured against: the least a Flask process can do to serve the same row.

Tiny WSGI apps, each run by the benchmarks as its own gunicorn process with the service's worker
model (Vigil's web worker, ``vigil_shared.gunicorn_worker.ProblemThreadWorker``: gthread with a heartbeat
at most once a second; same workers and threads):

- ``row``: Flask + SQLAlchemy Core, ``GET /api/v1/properties/<id>`` reads the property and its
  customer's location in one query from the property service's own database and answers the JSON
  the service answers to a caller who sees the PIN masked (no identity, no permissions, no ORM,
  no schema, no log line, no pre-ping);
- ``hop``: bare Flask forwarding ``GET /api/v1/...`` to an upstream with one pooled urllib3 call;
- ``signal``: bare Flask taking a central station's signal, ``POST /signals``: the Standard Webhooks
  signature checked with ``FLOOR_SECRET``, the JSON read, one row inserted into the property
  service's ``signals`` table and committed (no identity, no dedupe, no rate limit, no schema, no
  second process) — the floor of ``bench/bench_webhooks.py``;
- ``tech``: Flask + SQLAlchemy Core, the technician lookup's floor (``POST /api/v1/tech/lookup``):
  the property and its lock and location read by account number in one query (property database),
  the PIN's keyed hash (HMAC-SHA256 with the property service's blind-index key) checked in
  constant time, the customer's emergency contacts read in one query (customer database) and one
  ``tech.lookup`` audit row inserted and committed before the answer (gateway database), on the
  same databases as Vigil (no identity, no rate limit, no schema, no second hop) — the floor of
  ``bench/bench_tech_lookup.py``.

    FLOOR_ROLE=row FLOOR_DATABASE_URL=... gunicorn -k gthread --chdir bench 'floor_app:create_app()'
    FLOOR_ROLE=hop FLOOR_UPSTREAM=http://127.0.0.1:PORT gunicorn -k gthread --chdir bench 'floor_app:create_app()'
    FLOOR_ROLE=tech FLOOR_PROPERTY_URL=... FLOOR_CUSTOMER_URL=... FLOOR_GATEWAY_URL=... FLOOR_INDEX_KEY=... \
        gunicorn -k gthread --chdir bench 'floor_app:create_app()'
    FLOOR_ROLE=signal FLOOR_DATABASE_URL=... FLOOR_SECRET=whsec_... gunicorn -k gthread --chdir bench \
        'floor_app:create_app()'
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from urllib.parse import urlparse

from flask import Flask, Response, abort, request
from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, create_engine, select

MASKED_PIN = "***"
# the property's text columns as the property service reads them
# fmt: off
TEXT_COLUMNS = ("type", "system_type", "address", "city", "postal_code", "monitoring_status", "notes",
                "access_managed_by", "access_name", "access_phone", "access_email", "access_notes")
# fmt: on
_metadata = MetaData()
properties = Table(
    "properties",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer),
    *[Column(name, String) for name in ("account_number", *TEXT_COLUMNS)],
    Column("active", Boolean),
    Column("central_station", String),
    Column("deactivated_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("version", Integer),
)
known_customers = Table(
    "known_customers", _metadata, Column("customer_id", Integer, primary_key=True), Column("location_id", Integer)
)
PLAIN = ("id", "customer_id", "account_number", *TEXT_COLUMNS[:6], "notes", "active", "central_station")
ACCESS = ("managed_by", "name", "phone", "email", "notes")
READ = select(properties, known_customers.c.location_id).outerjoin(
    known_customers, known_customers.c.customer_id == properties.c.customer_id
)


def _timestamp(value):
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no offset; the service stores UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row_app(database_url: str) -> Flask:
    engine = create_engine(database_url, pool_size=5, max_overflow=15)
    app = Flask("floor_row")

    @app.get("/api/v1/properties/<int:property_id>")
    def read_property(property_id: int):
        with engine.connect() as conn:
            row = conn.execute(READ.where(properties.c.id == property_id)).mappings().first()
        if row is None:
            abort(404)
        body = {name: row[name] for name in PLAIN}
        body |= {
            "location_id": row["location_id"],
            "pin": MASKED_PIN,
            "access": {key: row[f"access_{key}"] for key in ACCESS},
            "deactivated_at": _timestamp(row["deactivated_at"]),
            "created_at": _timestamp(row["created_at"]),
            "updated_at": _timestamp(row["updated_at"]),
        }
        return Response(
            json.dumps(body), mimetype="application/json", headers={"ETag": f'"{row["id"]}.{row["version"]}"'}
        )

    return app


def hop_app(upstream: str) -> Flask:
    import urllib3

    parsed = urlparse(upstream)
    pool = urllib3.HTTPConnectionPool(parsed.hostname, parsed.port, maxsize=32, timeout=10.0)
    app = Flask("floor_hop")

    @app.get("/api/v1/<path:_rest>")
    def forward(_rest: str):
        query = request.query_string.decode("latin-1")
        answer = pool.request(
            "GET",
            request.path + (f"?{query}" if query else ""),
            headers={"Accept": request.headers.get("Accept", "*/*")},
            preload_content=True,
        )
        return Response(answer.data, status=answer.status, content_type=answer.headers.get("Content-Type"))

    return app


def signal_app(database_url: str, secret: str) -> Flask:
    from datetime import datetime

    from sqlalchemy import insert
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    signals = Table(
        "signals",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("property_id", Integer),
        *[Column(name, String) for name in ("account_number", "account_key", "central_station", "message_id", "kind")],
        *[Column(name, String) for name in ("zone", "panel_user")],
        Column("occurred_at", DateTime(timezone=True)),
        Column("received_at", DateTime(timezone=True)),
    )
    engine = create_engine(database_url, pool_size=5, max_overflow=15)
    webhook = Webhook(secret)
    app = Flask("floor_signal")

    @app.post("/signals")
    def take_signal():
        body = request.get_data()
        try:
            webhook.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            abort(401)
        data = json.loads(body)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(signals).values(
                    property_id=None,
                    account_number=data["account_number"],
                    account_key=f"floor-{data['account_number']}",
                    central_station="floor",
                    message_id=request.headers["webhook-id"],
                    kind=data["type"],
                    zone=data.get("zone"),
                    panel_user=data.get("user"),
                    occurred_at=now,
                    received_at=now,
                )
            )
        return Response('{"status": "received", "matched": false}', mimetype="application/json")

    return app


def tech_app(property_url: str, customer_url: str, gateway_url: str, index_key: str) -> Flask:
    import base64
    import hashlib
    import hmac
    from datetime import datetime

    from sqlalchemy import JSON, bindparam, func, insert

    meta = MetaData()
    guards = Table(
        "pin_guards",
        meta,
        Column("property_id", Integer, primary_key=True),
        Column("failures", Integer),
        Column("locked_until", DateTime(timezone=True)),
    )
    props = Table(
        "properties",
        meta,
        *[Column(name, Integer) for name in ("id", "customer_id")],
        *[Column(name, String) for name in ("account_key", "pin_salt", "pin_hash", "address", "city", "system_type")],
    )
    known = Table("known_customers", meta, Column("customer_id", Integer), Column("location_id", Integer))
    candidate = (
        select(props, guards.c.locked_until, guards.c.failures, known.c.location_id)
        .outerjoin(guards, guards.c.property_id == props.c.id)
        .outerjoin(known, known.c.customer_id == props.c.customer_id)
        .where(props.c.account_key == bindparam("key"))
    )
    contacts = Table(
        "customer_contacts",
        MetaData(),
        *[Column(name, Integer) for name in ("id", "customer_id", "call_priority")],
        *[Column(name, String) for name in ("type", "name", "relation", "role", "email")],
        Column("phones", JSON),
        *[Column(name, Boolean) for name in ("has_key", "is_primary")],
    )
    emergency = (
        select(*[contacts.c[n] for n in ("id", "name", "relation", "role", "phones", "email", "has_key")])
        .add_columns(contacts.c.call_priority, contacts.c.is_primary)
        .where(contacts.c.customer_id == bindparam("customer_id"), contacts.c.type == "emergency")
        .order_by(contacts.c.call_priority, func.lower(contacts.c.name), contacts.c.id)
        .limit(100)
    )
    audit = Table(
        "audit_entries",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("occurred_at", DateTime(timezone=True)),
        *[Column(n, String) for n in ("actor_id", "actor_name", "client_ip", "action", "outcome", "target_id")],
        Column("details", JSON),
    )
    audit_insert = insert(audit)
    key = hashlib.sha256(("vigil-blind-index:" + index_key).encode()).digest()
    engines = [create_engine(url, pool_size=5, max_overflow=15) for url in (property_url, customer_url, gateway_url)]
    property_db, customer_db, gateway_db = engines
    app = Flask("floor_tech")

    @app.post("/api/v1/tech/lookup")
    def look_up():
        data = json.loads(request.get_data())
        account, pin = data["account_number"], data["pin"]
        with property_db.connect() as conn:
            row = conn.execute(candidate, {"key": account.strip().upper()}).mappings().first()
        salt, expected = (row["pin_salt"], row["pin_hash"]) if row is not None else ("", "")
        digest = hmac.new(key, f"{salt}:{pin}".encode(), hashlib.sha256).digest()
        given = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        status = 200 if row is not None and hmac.compare_digest(expected or "", given) else 404
        listed = []
        if status == 200:
            with customer_db.connect() as conn:
                listed = [dict(c) for c in conn.execute(emergency, {"customer_id": row["customer_id"]}).mappings()]
        with gateway_db.begin() as conn:
            conn.execute(
                audit_insert,
                {
                    "occurred_at": datetime.now(UTC),
                    "actor_name": "floor",
                    "client_ip": request.remote_addr,
                    "action": "tech.lookup",
                    "outcome": "success" if status == 200 else "failure",
                    "target_id": str(row["id"]) if row is not None else None,
                    "details": {"account_number": account[:40], "status": status},
                },
            )
        if status != 200:
            abort(404)
        site = {name: row[name] for name in ("id", "customer_id", "address", "city", "system_type", "location_id")}
        return Response(json.dumps({"property": site, "emergency_contacts": listed}), mimetype="application/json")

    return app


def create_app() -> Flask:
    role = os.environ["FLOOR_ROLE"]
    if role == "tech":
        env = os.environ
        return tech_app(
            env["FLOOR_PROPERTY_URL"], env["FLOOR_CUSTOMER_URL"], env["FLOOR_GATEWAY_URL"], env["FLOOR_INDEX_KEY"]
        )
    if role == "signal":
        return signal_app(os.environ["FLOOR_DATABASE_URL"], os.environ["FLOOR_SECRET"])
    return row_app(os.environ["FLOOR_DATABASE_URL"]) if role == "row" else hop_app(os.environ["FLOOR_UPSTREAM"])
