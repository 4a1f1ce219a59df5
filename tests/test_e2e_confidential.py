"""Confidential values never leak: not in responses to callers without the permission, not in any
process's log, not in any event. Unmasked reads by permitted callers are audited."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import customer_body, signed_in_user, unique_phone

SSN = "219-09-9999"
SSN_DIGITS = SSN.replace("-", "")
BIRTHDATE = "1961-04-12"


def leaks(text: str) -> bool:
    return SSN in text or SSN_DIGITS in text


def with_ssn_and_birthdate(gateway, location_id, first, last, phone, duplicates=False, **fields) -> dict:
    """Creates a customer holding the planted SSN and birthdate (``duplicates``: even if one looks alike)."""
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"} if duplicates else None,
        json=customer_body(
            location_id, first_name=first, last_name=last, primary_phone=phone, ssn=SSN, birthdate=BIRTHDATE, **fields
        ),
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="session")
def secret_customer(gateway, locations) -> dict:
    return with_ssn_and_birthdate(gateway, locations["home"], "Cora", "Secret", unique_phone("613"))


def test_callers_without_the_permission_see_masked_values_everywhere(gateway_as, locations, secret_customer):
    clerk = gateway_as(
        ["customers.view", "customers.modify", "customers.contact_info.modify", "history.view"], [locations["home"]]
    )
    cid = secret_customer["id"]
    record = clerk.get(f"/api/v1/customers/{cid}")
    assert record.status_code == 200
    assert record.json()["ssn"] == "***-**-9999" and record.json()["birthdate"] == "***"
    listed = clerk.get("/api/v1/customers", params={"q": "Secret"})
    assert listed.status_code == 200 and not leaks(listed.text)
    history = clerk.get(f"/api/v1/customers/{cid}/history")
    assert history.status_code == 200 and not leaks(history.text)
    for response in (record, listed, history):
        assert not leaks(response.text) and BIRTHDATE not in response.text
    refused = clerk.patch(f"/api/v1/customers/{cid}", json={"ssn": "219-09-9998"})
    assert refused.status_code == 403 and not leaks(refused.text), "changing a saved SSN needs confidential.ssn.modify"


def test_permitted_reads_are_unmasked_and_audited(gateway, gateway_as, locations, secret_customer):
    officer = gateway_as(["customers.view", "confidential.ssn.view"], [locations["home"]])
    record = officer.get(f"/api/v1/customers/{secret_customer['id']}")
    assert record.json()["ssn"] == SSN and "X-Vigil-Confidential-Reads" not in record.headers
    entries = gateway.get("/api/v1/audit", params={"action": "confidential.read", "target_id": secret_customer["id"]})
    assert entries.json()["total"] >= 1
    assert "ssn" in entries.json()["items"][0]["details"]["fields"]


def test_no_event_carries_a_confidential_value(gateway, secret_customer):
    for service in ("customer", "property", "billing", "credit"):
        events = gateway.get(f"/api/v1/ops/{service}/outbox", params={"per_page": 100})
        assert events.status_code == 200
        assert not leaks(events.text) and BIRTHDATE not in events.text, service
        assert not [e for e in events.json()["items"] if "data" in e], service  # the operator's view has no payload


def test_no_log_line_carries_a_confidential_value(stack, gateway, secret_customer):
    gateway.get(f"/api/v1/customers/{secret_customer['id']}")  # an unmasked read, to be sure one was logged
    for log_file in sorted(stack.log_dir.glob("*.log")):
        text = log_file.read_text(errors="replace")
        assert not leaks(text), f"{log_file.name} contains the SSN"
        assert BIRTHDATE not in text, f"{log_file.name} contains the birthdate"
        for line in text.splitlines()[:5]:
            if line.startswith("{"):
                json.loads(line)  # every process logs JSON lines


# --- no operation carries or reveals a value the caller cannot see at its source ---------


@pytest.fixture(scope="module")
def split_office_user(stack, gateway, locations):
    """Works in both offices; sees SSNs and birthdates unmasked only in ``other`` (the target)."""
    suffix = uuid.uuid4().hex[:8]
    base = gateway.post(
        "/api/v1/roles",
        json={
            "name": f"e2e-split-{suffix}",
            "permissions": [
                "customers.view",
                "customers.create",
                "customers.modify",
                "customers.contact_info.modify",
                "leads.view",
                "leads.create",
                "leads.modify",
                "history.view",
            ],
        },
    )
    unmask = gateway.post(
        "/api/v1/roles",
        json={"name": f"e2e-unmask-{suffix}", "permissions": ["confidential.ssn.view", "confidential.birthdate.view"]},
    )
    assert base.status_code == unmask.status_code == 201, (base.text, unmask.text)
    grants = [
        {"role_id": base.json()["id"], "location_id": locations["home"]},
        {"role_id": base.json()["id"], "location_id": locations["other"]},
        {"role_id": unmask.json()["id"], "location_id": locations["other"]},
    ]
    return signed_in_user(stack, gateway, f"e2e-split-{suffix}", grants)


def test_a_copy_into_an_office_that_shows_ssns_carries_no_masked_value(gateway, locations, split_office_user):
    cid = with_ssn_and_birthdate(gateway, locations["home"], "Copy", "Source", "613-555-0188", duplicates=True)["id"]
    seen = split_office_user.get(f"/api/v1/customers/{cid}")
    assert seen.json()["ssn"] == "***-**-9999" and seen.json()["birthdate"] == "***"
    copied = split_office_user.post(f"/api/v1/customers/{cid}/duplicate", json={"location_id": locations["other"]})
    assert copied.status_code == 201, copied.text
    assert copied.json()["ssn"] is None and copied.json()["birthdate"] is None
    assert not leaks(copied.text) and BIRTHDATE not in copied.text
    again = split_office_user.get(f"/api/v1/customers/{copied.json()['id']}")
    assert not leaks(again.text) and BIRTHDATE not in again.text
    assert gateway.get(f"/api/v1/customers/{copied.json()['id']}").json()["ssn"] is None  # nothing stored either
    moved = split_office_user.patch(f"/api/v1/customers/{cid}", json={"location_id": locations["other"]})
    assert moved.status_code == 403 and not leaks(moved.text)
    assert gateway.get(f"/api/v1/customers/{cid}").json()["location_id"] == locations["home"]


def test_converting_a_lead_into_an_office_that_shows_ssns_is_refused(gateway, locations, split_office_user):
    lead = {"kind": "lead", "lead_status": "new", "account_type": None}
    lid = with_ssn_and_birthdate(gateway, locations["home"], "Lead", "Secret", "613-555-0187", duplicates=True, **lead)[
        "id"
    ]
    refused = split_office_user.post(
        f"/api/v1/customers/{lid}/convert",
        json={"location_id": locations["other"], "sold_by": "rep", "account_type": "residential"},
    )
    assert refused.status_code == 403 and {"ssn", "birthdate"} <= set(refused.json()["errors"])
    assert not leaks(refused.text) and BIRTHDATE not in refused.text
    assert gateway.get(f"/api/v1/customers/{lid}").json()["kind"] == "lead"
    converted = split_office_user.post(
        f"/api/v1/customers/{lid}/convert",
        json={"location_id": locations["home"], "sold_by": "rep", "account_type": "residential"},
    )
    assert converted.status_code == 200 and converted.json()["ssn"] == "***-**-9999"


def test_the_duplicate_check_never_confirms_a_guessed_ssn(gateway, gateway_as, locations, secret_customer):
    """The attacker sees ``***-**-9999`` on Cora's record and guesses the rest: every guess answers alike."""
    attacker = gateway_as(["customers.view", "customers.create"], [locations["home"]])
    assert attacker.get(f"/api/v1/customers/{secret_customer['id']}").json()["ssn"] == "***-**-9999"
    answers = set()
    for guess in (SSN, "219-09-9998"):
        response = attacker.post(
            "/api/v1/customers",
            json=customer_body(
                locations["home"],
                first_name="Guess",
                last_name=guess[-4:],
                ssn=guess,
                primary_phone=unique_phone("613"),
            ),
        )
        answers.add(response.status_code)
        assert "ssn" not in str(response.json().get("matches")), response.text
        assert str(secret_customer["id"]) not in str(response.json().get("matches"))
    assert answers == {201}
    entitled = gateway_as(["customers.view", "customers.create", "confidential.ssn.view"], [locations["home"]])
    named = entitled.post(
        "/api/v1/customers",
        json=customer_body(locations["home"], first_name="Real", primary_phone=unique_phone("613"), ssn=SSN),
    )
    assert named.status_code == 409
    assert any(m["id"] == secret_customer["id"] and m["reasons"] == ["ssn"] for m in named.json()["matches"])
