"""Test data shared by this service's tests."""

from __future__ import annotations

from itertools import count

from sqlalchemy import select

from vigil_customer.models import messaging

_numbers = count(1000)


def customer(**fields) -> dict:
    """A valid customer body; each call gets its own phone so duplicates are not flagged by accident."""
    n = next(_numbers)
    body = {
        "location_id": 1,
        "first_name": "Dana",
        "last_name": "Reyes",
        "city": "Provo",
        "state": "UT",
        "primary_phone": f"801-555-{n % 10000:04d}",
        "account_type": "residential",
    }
    return body | fields


def lead(**fields) -> dict:
    n = next(_numbers)
    body = {
        "kind": "lead",
        "location_id": 1,
        "first_name": "Lee",
        "last_name": "Prospect",
        "city": "Ottawa",
        "state": "ON",
        "primary_phone": f"613-555-{n % 10000:04d}",
        "lead_status": "new",
    }
    return body | fields


def create(api, body=None, **fields):
    response = api.post("/api/v1/customers?allow_duplicates=true", json=body or customer(**fields))
    assert response.status_code == 201, response.json
    return response.json


def outbox_events(session, event_type=None):
    rows = session.scalars(select(messaging.OutboxEvent).order_by(messaging.OutboxEvent.position)).all()
    return [r for r in rows if event_type is None or r.type == event_type]
