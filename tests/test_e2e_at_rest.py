"""No confidential value sits in plaintext at rest: not in any table, log, queued message or file.

Runs after the other e2e tests (``run_last``), on the same stack, so their records, logs and
events are scanned too. It plants its own values first, through the gateway as a user would:
customers with an SSN and a birthdate (created, read, patched, duplicated, with and without
``Idempotency-Key``), a property with an alarm PIN, a system with a panel password and a user with
a password; then it waits until every event has been published and scans
- every text, JSON and binary column of every table of the gateway's and each service's database,
- every file under the stack's var/ folder (logs, the embedded broker's messages, uploads (a credit
  application holding the planted SSN and birthdate is uploaded) and the
  SQLite files themselves, so rows deleted but left in free pages count as well),
for each planted value in the forms it is typed in (``123-45-6789``, ``123456789``, …).
On RabbitMQ, messages are consumed by the time it scans; their content is also in the outbox
tables, which are scanned.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from pathlib import Path

import pytest
from conftest import customer_body, unique_phone
from sqlalchemy import JSON, LargeBinary, MetaData, String, Table, Text, create_engine, inspect, select

from vigil_shared.config import PROCESS_NAMES

pytestmark = pytest.mark.run_last(2)


def _planted() -> dict[str, object]:
    rng = random.Random()
    area, group, serial = rng.randint(100, 665), rng.randint(10, 99), rng.randint(1000, 9999)
    year, month, day = rng.randint(1931, 1949), rng.randint(1, 12), rng.randint(10, 28)
    pin = f"{rng.randint(1000, 9999)}"
    return {
        "ssn": f"{area}-{group}-{serial}",
        "birthdate": f"{year}-{month:02d}-{day:02d}",
        "pin": pin,
        "system_password": f"AtRest-panel-{uuid.uuid4().hex[:12]}",
        "user_password": f"AtRest-user-{uuid.uuid4().hex[:12]}",
    }


def _needles(planted: dict) -> dict[str, re.Pattern]:
    """Each planted value in every form it might be written in → a pattern naming it."""
    ssn = planted["ssn"]
    digits = ssn.replace("-", "")
    year, month, day = planted["birthdate"].split("-")
    pin = planted["pin"]
    literal = {
        "ssn": [ssn, digits, ssn.replace("-", " ")],
        "birthdate": [planted["birthdate"], f"{year}{month}{day}", f"{month}/{day}/{year}"],
        "system password": [planted["system_password"]],
        "user password": [planted["user_password"]],
    }
    needles = {name: re.compile("|".join(re.escape(v) for v in values).encode()) for name, values in literal.items()}
    # A 4-digit PIN is too short to find alone: it counts next to its name, or as a whole value.
    needles["pin"] = re.compile(rf"pin\W{{0,6}}{pin}(?!\d)|^{pin}$".encode(), re.IGNORECASE | re.MULTILINE)
    return needles


def _plant(gateway, stack, planted: dict) -> dict:
    location = gateway.post("/api/v1/locations", json={"name": f"At rest {uuid.uuid4().hex[:6]}"})
    assert location.status_code == 201, location.text
    location_id = location.json()["id"]
    sensitive = {"ssn": planted["ssn"], "birthdate": planted["birthdate"]}
    body = customer_body(
        location_id,
        first_name="Plant",
        last_name=f"Rest{uuid.uuid4().hex[:6]}",
        primary_phone=unique_phone("613"),
        **sensitive,
    )
    key = {"Idempotency-Key": uuid.uuid4().hex}
    created = gateway.post("/api/v1/customers?allow_duplicates=true", json=body, headers=key)
    assert created.status_code == 201, created.text
    replay = gateway.post("/api/v1/customers?allow_duplicates=true", json=body, headers=key)
    assert replay.status_code == 201
    customer = created.json()
    assert customer["ssn"] == planted["ssn"]  # the admin sees it: the planted value was accepted
    other = gateway.post("/api/v1/customers?allow_duplicates=true", json=body | {"last_name": "Plain"})
    assert other.status_code == 201, other.text
    path = f"/api/v1/customers/{customer['id']}"
    assert gateway.get(path).status_code == 200
    patched = gateway.patch(path, json={"ssn": planted["ssn"].replace("-", "")})  # the other typed form
    assert patched.status_code == 200, patched.text
    assert gateway.get(f"{path}/history").status_code == 200
    gateway.post(f"{path}/duplicate", json={"location_id": location_id}, headers={"Idempotency-Key": uuid.uuid4().hex})
    gateway.get("/api/v1/customers", params={"q": planted["ssn"]})  # searched for, as a user would
    # a scanned credit application uploaded to the record (its bytes are encrypted on disk)
    application = f"Credit application\nSSN {planted['ssn']}\nDOB {planted['birthdate']}\n".encode()
    uploaded = gateway.post(f"{path}/files", files={"file": ("application.txt", application, "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    assert gateway.get(f"{path}/files/{uploaded.json()['id']}/content").content == application

    prop = gateway.post(
        f"/api/v1/customers/{customer['id']}/properties",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={
            "account_number": f"REST-{uuid.uuid4().hex[:8]}",
            "pin": planted["pin"],
            "address": "1 Rest Street",
            "city": "Ottawa",
        },
    )
    assert prop.status_code == 201, prop.text
    assert gateway.get(f"/api/v1/properties/{prop.json()['id']}").json()["pin"] == planted["pin"]
    kind = gateway.post("/api/v1/system-kinds", json={"name": f"Rest panel {uuid.uuid4().hex[:6]}"})
    assert kind.status_code == 201, kind.text
    system = gateway.post(
        f"/api/v1/properties/{prop.json()['id']}/systems",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"kind_id": kind.json()["id"], "username": "installer", "password": planted["system_password"]},
    )
    assert system.status_code == 201, system.text

    username = f"rest-{uuid.uuid4().hex[:8]}"
    user = gateway.post(
        "/api/v1/users",
        json={"username": username, "password": planted["user_password"], "grants": []},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert user.status_code == 201, user.text
    signed_in = gateway.http.post(
        gateway.url("/api/v1/auth/token"), timeout=15, json={"username": username, "password": planted["user_password"]}
    )
    assert signed_in.status_code == 200, signed_in.text
    return customer


def _wait_for_events(gateway) -> None:
    """Until every service's outbox has published everything (the events then sit in logs/queues)."""

    def drained():
        for service in ("customer", "property"):
            page = gateway.get(f"/api/v1/ops/{service}/outbox", params={"per_page": 100})
            if page.status_code != 200 or any(e["published_at"] is None for e in page.json()["items"]):
                return False
        return True

    gateway.wait_for(drained, timeout=60, what="every outbox event published")


def _database_urls(stack) -> dict[str, str]:
    var_dir = Path(stack.env["VIGIL_VAR_DIR"])
    return {
        name: stack.env.get(f"VIGIL_{name.upper()}_DATABASE_URL") or f"sqlite:///{var_dir / (name + '.db')}"
        for name in PROCESS_NAMES
    }


def _scan_databases(stack, needles) -> list[str]:
    found = []
    for name, url in _database_urls(stack).items():
        engine = create_engine(url)
        try:
            inspector = inspect(engine)
            with engine.connect() as conn:
                for table_name in inspector.get_table_names():
                    table = Table(table_name, MetaData(), autoload_with=conn)
                    columns = [
                        c
                        for c in table.columns
                        if isinstance(c.type, (String, Text, LargeBinary, JSON))
                        or c.type.__class__.__name__ in ("JSONB", "BYTEA", "UUID")
                    ]
                    if not columns:
                        continue
                    for row in conn.execute(select(*columns)):
                        for column, value in zip(columns, row, strict=False):
                            data = _as_bytes(value)
                            for what, needle in needles.items():
                                if data and needle.search(data):
                                    found.append(f"{name} database: {table_name}.{column.name} holds the {what}")
        finally:
            engine.dispose()
    return sorted(set(found))


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode()
    return str(value).encode()


def _scan_files(stack, needles) -> list[str]:
    found = []
    root = Path(stack.env["VIGIL_VAR_DIR"])
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for what, needle in needles.items():
            if needle.search(data):
                found.append(f"file {path.relative_to(root)} holds the {what}")
    return found


def test_no_confidential_value_in_plaintext_at_rest(stack, gateway):
    planted = _planted()
    _plant(gateway, stack, planted)
    _wait_for_events(gateway)
    needles = _needles(planted)
    found = _scan_databases(stack, needles) + _scan_files(stack, needles)
    assert not found, "planted confidential values found in plaintext:\n" + "\n".join(found)


def test_the_scan_finds_a_planted_value():
    """The scanner itself, so a pass means "not there", not "not looked for"."""
    planted = _planted()
    needles = _needles(planted)
    digits = planted["ssn"].replace("-", "").encode()
    assert needles["ssn"].search(b'{"ssn": "' + digits + b'"}')
    assert needles["pin"].search(f'{{"pin": "{planted["pin"]}"}}'.encode())
    assert needles["pin"].search(planted["pin"].encode())
    assert not needles["pin"].search(f"id {planted['pin']}5 at 2026".encode())
    assert needles["birthdate"].search(planted["birthdate"].encode())
