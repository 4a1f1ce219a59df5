import dataclasses
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from vigil_property import tech
from vigil_property.models import LookupWindow, PinGuard, Property
from vigil_shared.db import utcnow
from vigil_shared.testing import identity_with

VERIFY = "/api/v1/tech/verify"


def technician(*extra, locations=(1,), ip="203.0.113.7", username="tech"):
    return dataclasses.replace(
        identity_with("tech_portal.use", *extra, locations=locations, username=username), client_ip=ip
    )


@pytest.fixture
def site(api, known):
    known(7)
    prop = api.post(
        "/api/v1/customers/7/properties",
        json={
            "account_number": "ACC-77",
            "pin": "2468",
            "address": "12 Elm Street",
            "city": "Ottawa",
            "system_type": "DSC 1832",
            "notes": "Dog on premises.",
            "access": {"managed_by": "tenant", "name": "Tina Tenant", "phone": "613-555-0142"},
        },
    ).json
    kind = api.post("/api/v1/system-kinds", json={"name": "DSC PowerSeries"}).json
    api.post(
        f"/api/v1/properties/{prop['id']}/systems",
        json={"kind_id": kind["id"], "ip_address": "10.0.0.7", "username": "installer", "password": "5555"},
    )
    api.post(f"/api/v1/properties/{prop['id']}/equipment", json={"item": "Keypad", "zone": "1"})
    api.post(f"/api/v1/properties/{prop['id']}/equipment", json={"item": "Old siren", "status": "removed"})
    now = utcnow()
    for days, status in ((1, None), (-2, None), (2, "cancel")):
        created = api.post(
            f"/api/v1/properties/{prop['id']}/appointments",
            json={
                "type": "service",
                "starts_at": (now + timedelta(days=days)).isoformat(),
                "ends_at": (now + timedelta(days=days, hours=1)).isoformat(),
                "technician_id": 5,
            },
        ).json
        if status:
            api.post(f"/api/v1/appointments/{created['id']}/cancel", json={"reason": "x"})
    return prop


def verify(api, identity, account="ACC-77", pin="2468"):
    return api.as_(identity).post(VERIFY, json={"account_number": account, "pin": pin})


def test_the_right_pin_answers_what_is_needed_on_site(api, site):
    response = verify(api, technician())
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"property", "systems", "equipment", "open_appointments"}
    assert body["property"]["address"] == "12 Elm Street" and body["property"]["system_type"] == "DSC 1832"
    assert body["property"]["access"]["name"] == "Tina Tenant" and body["property"]["customer_id"] == 7
    assert "pin" not in body["property"] and "2468" not in response.text
    [system] = body["systems"]
    assert system["ip_address"] == "10.0.0.7" and system["password"] == "***"
    assert system["kind_name"] == "DSC PowerSeries"
    assert [e["item"] for e in body["equipment"]] == ["Keypad"]
    assert len(body["open_appointments"]) == 1 and body["open_appointments"][0]["technician_id"] == 5
    assert "X-Vigil-Confidential-Reads" not in response.headers


def test_a_technician_allowed_to_see_codes_gets_the_system_password_audited(api, site):
    response = verify(api, technician("confidential.installation_codes.view"))
    assert response.json["systems"][0]["password"] == "5555"
    assert json.loads(response.headers["X-Vigil-Confidential-Reads"])[0]["fields"] == ["password"]


def test_a_wrong_pin_and_an_unknown_account_look_the_same(api, site):
    wrong, unknown = verify(api, technician(), pin="1111"), verify(api, technician(), account="NOPE")
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json["type"] == unknown.json["type"] == "urn:vigil:problem:no-match"
    assert wrong.json["detail"] == unknown.json["detail"]


def test_five_wrong_pins_lock_the_account_for_15_minutes(api, session, site):
    for _ in range(4):
        assert verify(api, technician(), pin="0000").status_code == 404
    fifth = verify(api, technician(), pin="0000")
    assert fifth.status_code == 429 and fifth.json["type"] == "urn:vigil:problem:account-locked"
    assert 890 <= int(fifth.headers["Retry-After"]) <= 900
    refused = verify(api, technician(ip="198.51.100.1", username="other"))  # even the right PIN, from elsewhere
    assert refused.status_code == 429 and refused.json["type"] == "urn:vigil:problem:account-locked"
    session.execute(update(PinGuard).values(locked_until=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert verify(api, technician()).status_code == 200


def test_a_right_pin_clears_the_count(api, session, site):
    for _ in range(4):
        verify(api, technician(), pin="0000")
    assert verify(api, technician()).status_code == 200
    for _ in range(4):
        assert verify(api, technician(), pin="0000").status_code == 404  # the count started again


def test_attempts_are_rate_limited_per_client_address(api, site):
    for _ in range(tech.ATTEMPTS_PER_WINDOW):
        assert verify(api, technician(), account="NOPE").status_code == 404
    limited = verify(api, technician())
    assert limited.status_code == 429 and limited.json["type"] == "urn:vigil:problem:rate-limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert verify(api, technician(ip="198.51.100.9")).status_code == 200


def test_only_technicians_of_the_propertys_location(api, site):
    nobody = api.as_(dataclasses.replace(identity_with("properties.view"), client_ip="1.2.3.4"))
    refused = nobody.post(VERIFY, json={"account_number": "ACC-77", "pin": "2468"})
    assert refused.status_code == 403 and refused.json["permission"] == "tech_portal.use"
    elsewhere = technician(locations=(2,))
    unknown = verify(api, elsewhere, account="NOPE")
    assert unknown.status_code == 404
    for pin in ("2468", "1111"):  # right or wrong, the very answer an unknown account gets
        answer = verify(api, elsewhere, pin=pin)
        assert (answer.status_code, answer.json) == (404, unknown.json | {"request_id": answer.json["request_id"]})


def test_a_technician_of_another_office_can_neither_lock_an_account_nor_learn_it_exists(api, session, site):
    """Wrong PINs from a technician who may not use the portal where the property is counted against it:
    the fifth locked it (its own technicians were refused for 15 minutes) and answered "locked", which an
    unknown account never does."""
    elsewhere = technician(locations=(2,), ip="198.51.100.30")
    answers = {verify(api, elsewhere, pin="0000").json["type"] for _ in range(tech.MAX_WRONG_PINS + 1)}
    assert answers == {tech.NO_MATCH}
    assert session.scalar(select(PinGuard.failures).where(PinGuard.property_id == site["id"])) in (None, 0)
    assert verify(api, technician()).status_code == 200


def test_a_property_without_a_stored_pin_has_the_default(api, session, site):
    session.execute(update(Property).values(pin_salt=None, pin_hash=None, pin_encrypted=None))
    session.commit()
    assert verify(api, technician(), pin="0000").status_code == 200
    assert api.get(f"/api/v1/properties/{site['id']}").json["pin"] == "0000"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"account_number": "ACC-77"}, "pin"),
        ({"account_number": "ACC-77", "pin": "12"}, "pin"),
        ({"pin": "2468"}, "account_number"),
        ({"account_number": "ACC-77", "pin": "2468", "ssn": "x"}, "ssn"),
    ],
)
def test_bad_requests_are_422(api, site, body, field):
    response = api.as_(technician()).post(VERIFY, json=body)
    assert response.status_code == 422 and field in response.json["errors"]


def test_the_internal_route_is_not_in_the_published_document(app):
    assert not [path for path in app.extensions["vigil_api"].spec.to_dict()["paths"] if "/tech/" in path]


def test_ended_windows_are_pruned(api, session, site, monkeypatch):
    verify(api, technician(ip="198.51.100.20"))
    session.execute(update(LookupWindow).values(window_start=utcnow() - timedelta(minutes=5)))
    session.commit()
    monkeypatch.setattr(tech, "PRUNE_SHARE", 1.0)
    verify(api, technician(ip="198.51.100.21"))
    session.expire_all()
    assert [w.client for w in session.query(LookupWindow)] == ["198.51.100.21"]


def _on_site_as_the_entities_dumped(app, session, identity, property_id: int, location_id: int):
    """The answer as the lookup built it before its reads became plain rows: ORM entities, the property
    and system bodies of the other views, and OnSiteSchema's own dump."""
    from flask import g

    from vigil_property.api.present import property_body, system_body
    from vigil_property.models import Appointment, Equipment, System, SystemKind
    from vigil_property.schemas import OnSiteSchema
    from vigil_shared.onsite import TechSite

    session.expire_all()
    with app.test_request_context():
        g.identity = identity
        prop = session.get(Property, property_id)
        body = property_body(prop, location_id, with_pin=False)
        systems = session.execute(
            select(System, SystemKind)
            .join(SystemKind, SystemKind.id == System.kind_id)
            .where(System.property_id == property_id)
            .order_by(System.id)
        )
        equipment = session.scalars(
            select(Equipment)
            .where(Equipment.property_id == property_id, Equipment.status != "removed")
            .order_by(Equipment.id)
        )
        visits = session.scalars(
            select(Appointment)
            .where(
                Appointment.property_id == property_id,
                Appointment.status == "scheduled",
                Appointment.ends_at >= utcnow(),
            )
            .order_by(Appointment.starts_at, Appointment.id)
        )
        return OnSiteSchema().dump(
            {
                "property": {key: body[key] for key in TechSite().fields},
                "systems": [system_body(system, kind, location_id, identity) for system, kind in systems],
                "equipment": list(equipment),
                "open_appointments": list(visits),
            }
        ), g.get("confidential_reads")


@pytest.mark.parametrize("codes", [False, True], ids=["masked", "codes shown"])
def test_the_on_site_answer_from_rows_is_the_one_the_entities_dumped(app, api, session, site, codes):
    """The lookup reads plain rows and dumps them by kept converters; the JSON (and the confidential reads
    reported) must be what loading the entities and dumping them through OnSiteSchema gave."""
    prop_id = site["id"]
    kind = api.post(
        "/api/v1/system-kinds",
        json={"name": "Hik NVR", "fields": [{"name": "channels", "label": "Channels", "required": True}]},
    ).json
    api.post(
        f"/api/v1/properties/{prop_id}/systems",
        json={"kind_id": kind["id"], "port": 8000, "version": "4.1", "notes": "rack", "details": {"channels": "16"}},
    )  # no password: null, not masked
    api.post(
        f"/api/v1/properties/{prop_id}/equipment",
        json={"item": "Siren", "serial_number": "SN-9", "install_date": "2024-02-29", "warranty_end": "2027-02-28"},
    )
    identity = technician("confidential.installation_codes.view") if codes else technician()
    response = verify(api, identity)
    assert response.status_code == 200, response.json
    expected, reads = _on_site_as_the_entities_dumped(app, session, identity, prop_id, 1)
    assert response.json == expected
    assert len(expected["systems"]) == 2 and len(expected["equipment"]) == 2 and expected["open_appointments"]
    assert expected["equipment"][1]["install_date"] == "2024-02-29"
    reported = response.headers.get("X-Vigil-Confidential-Reads")
    assert (json.loads(reported) if reported else None) == reads
    assert (reads is not None) == codes


def test_a_customer_not_yet_placed_is_placed_once_by_the_customer_service(api, session, site, customer_service):
    """The replica without the customer's location: the lookup asks the customer service (on the request's
    own session, built only then), keeps the answer, and checks the right at that location."""
    from vigil_property.models import KnownCustomer

    session.execute(update(KnownCustomer).where(KnownCustomer.customer_id == 7).values(location_id=None))
    session.commit()
    customer_service.asked.clear()
    assert verify(api, technician(locations=(2,))).status_code == 404  # placed at 1 by the customer service
    assert customer_service.asked == [7]
    session.expire_all()
    assert session.get(KnownCustomer, 7).location_id == 1  # kept: the next lookup does not ask again
    found = verify(api, technician())
    assert found.status_code == 200 and found.json["property"]["location_id"] == 1
    assert customer_service.asked == [7]
