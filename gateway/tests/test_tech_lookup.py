"""The technician lookup's answer is dumped by converters built once; it must be TechLookupResult's own dump."""

import pytest

from vigil_gateway.aggregates.tech import TechLookupResult, dump_lookup_result

SITE = {
    "property": {
        "id": 3,
        "customer_id": 7,
        "location_id": None,
        "account_number": "ACC-77",
        "type": "residential",
        "system_type": None,
        "address": "12 Elm Street",
        "city": "Ottawa",
        "postal_code": "K1A 0B1",
        "monitoring_status": "active",
        "active": True,
        "notes": None,
        "access": {"managed_by": "tenant", "name": "Tina", "phone": None, "email": None, "notes": "", "extra": 1},
        "pin": "2468",  # not the on-site contract's: never passed on
        "central_station": "x",
    },
    "systems": [
        {
            "id": 1,
            "kind_id": 2,
            "kind_name": "DSC",
            "ip_address": "10.0.0.7",
            "port": 4025,
            "username": "installer",
            "password": "***",
            "version": None,
            "notes": "rack",
            "details": {"receiver_line": "2", "zone": None},
            "password_encrypted": "gAAAA…",  # not the contract's
        },
        {"id": 4, "kind_id": 2, "kind_name": None, "port": None, "password": None, "details": {}},
    ],
    "equipment": [
        {
            "id": 5,
            "item": "Keypad",
            "zone": "1",
            "serial_number": None,
            "install_date": "2024-02-29",
            "warranty_end": None,
            "status": "installed",
            "notes": "not shown",
        },
    ],
    "open_appointments": [
        {
            "id": 9,
            "type": "service",
            "starts_at": "2026-12-07T14:00:00Z",
            "ends_at": "2026-12-07T15:00:00Z",
            "technician_id": None,
            "notes": None,
            "status": "scheduled",
        },
    ],
}
CONTACTS = [
    {
        "id": 1,
        "name": "Ann",
        "relation": "neighbour",
        "role": None,
        "email": None,
        "has_key": True,
        "call_priority": 1,
        "is_primary": False,
        "phones": [
            {"label": "mobile", "number": "613-555-0100", "e164": "+16135550100"},
            {"label": None, "number": "1"},
        ],
    },
    {
        "id": 2,
        "name": "Bob",
        "relation": None,
        "role": "keyholder",
        "phones": [],
        "email": "b@example.com",
        "has_key": False,
        "call_priority": None,
        "is_primary": True,
        "passcode": "secret",
    },
]


@pytest.mark.parametrize(
    "body",
    [
        SITE | {"emergency_contacts": CONTACTS, "partial": False, "unavailable": []},
        SITE | {"emergency_contacts": None, "partial": True, "unavailable": ["customer"]},
        {"property": SITE["property"], "systems": [], "equipment": [], "open_appointments": [], "partial": False},
    ],
    ids=["whole", "partial", "empty lists"],
)
def test_the_lookups_answer_is_the_json_the_result_schema_would_dump(body):
    dumped = dump_lookup_result(body)
    assert dumped == TechLookupResult().dump(body)
    assert "pin" not in dumped["property"] and "extra" not in dumped["property"]["access"]
    assert all("password_encrypted" not in system for system in dumped["systems"])
    assert all("passcode" not in contact for contact in dumped.get("emergency_contacts") or [])
