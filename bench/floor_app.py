"""The floor a property read is measured against: the least a Flask process can do to serve the same row.

Two tiny WSGI apps, each run by the benchmarks as its own gunicorn process with the service's
worker model (``gthread``, same workers and threads):

- ``row``: Flask + SQLAlchemy Core, ``GET /api/v1/properties/<id>`` reads the property and its
  customer's location in one query from the property service's own database and answers the JSON
  the service answers to a caller who sees the PIN masked (no identity, no permissions, no ORM,
  no schema, no log line, no pre-ping);
- ``hop``: bare Flask forwarding ``GET /api/v1/...`` to an upstream with one pooled urllib3 call;
- ``signal``: bare Flask taking a central station's signal, ``POST /signals``: the Standard Webhooks
  signature checked with ``FLOOR_SECRET``, the JSON read, one row inserted into the property
  service's ``signals`` table and committed (no identity, no dedupe, no rate limit, no schema, no
  second process) — the floor of ``bench/bench_webhooks.py``.

    FLOOR_ROLE=row FLOOR_DATABASE_URL=... gunicorn -k gthread --chdir bench 'floor_app:create_app()'
    FLOOR_ROLE=hop FLOOR_UPSTREAM=http://127.0.0.1:PORT gunicorn -k gthread --chdir bench 'floor_app:create_app()'
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


def create_app() -> Flask:
    role = os.environ["FLOOR_ROLE"]
    if role == "signal":
        return signal_app(os.environ["FLOOR_DATABASE_URL"], os.environ["FLOOR_SECRET"])
    return row_app(os.environ["FLOOR_DATABASE_URL"]) if role == "row" else hop_app(os.environ["FLOOR_UPSTREAM"])
