"""The floor a property read is measured against: the least a Flask process can do to serve the same row.

Two tiny WSGI apps, each run by the benchmarks as its own gunicorn process with the service's
worker model (``gthread``, same workers and threads):

- ``row``: Flask + SQLAlchemy Core, ``GET /api/v1/properties/<id>`` reads the property and its
  customer's location in one query from the property service's own database and answers the JSON
  the service answers to a caller who sees the PIN masked (no identity, no permissions, no ORM,
  no schema, no log line, no pre-ping);
- ``hop``: bare Flask forwarding ``GET /api/v1/...`` to an upstream with one pooled urllib3 call.

    FLOOR_ROLE=row FLOOR_DATABASE_URL=... gunicorn -k gthread --chdir bench 'floor_app:create_app()'
    FLOOR_ROLE=hop FLOOR_UPSTREAM=http://127.0.0.1:PORT gunicorn -k gthread --chdir bench 'floor_app:create_app()'
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
    Column("deactivated_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("version", Integer),
)
known_customers = Table(
    "known_customers", _metadata, Column("customer_id", Integer, primary_key=True), Column("location_id", Integer)
)
PLAIN = ("id", "customer_id", "account_number", *TEXT_COLUMNS[:6], "notes", "active")
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


def create_app() -> Flask:
    role = os.environ["FLOOR_ROLE"]
    return row_app(os.environ["FLOOR_DATABASE_URL"]) if role == "row" else hop_app(os.environ["FLOOR_UPSTREAM"])
