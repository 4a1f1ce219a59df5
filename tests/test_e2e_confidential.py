"""Confidential values never leak: not in responses to callers without the permission, not in any
process's log, not in any event. Unmasked reads by permitted callers are audited."""
from __future__ import annotations

import json

import pytest

from conftest import customer_body

SSN = "219-09-9999"
SSN_DIGITS = SSN.replace("-", "")
BIRTHDATE = "1961-04-12"


def leaks(text: str) -> bool:
    return SSN in text or SSN_DIGITS in text


@pytest.fixture(scope="session")
def secret_customer(gateway, locations) -> dict:
    response = gateway.post("/api/v1/customers", json=customer_body(
        locations["home"], first_name="Cora", last_name="Secret", primary_phone="613-555-0199", ssn=SSN,
        birthdate=BIRTHDATE))
    assert response.status_code == 201, response.text
    return response.json()


def test_callers_without_the_permission_see_masked_values_everywhere(gateway_as, locations, secret_customer):
    clerk = gateway_as(["customers.view", "customers.modify", "customers.contact_info.modify", "history.view"],
                       [locations["home"]])
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


def test_no_log_line_carries_a_confidential_value(stack, gateway, secret_customer):
    gateway.get(f"/api/v1/customers/{secret_customer['id']}")  # an unmasked read, to be sure one was logged
    for log_file in sorted(stack.log_dir.glob("*.log")):
        text = log_file.read_text(errors="replace")
        assert not leaks(text), f"{log_file.name} contains the SSN"
        assert BIRTHDATE not in text, f"{log_file.name} contains the birthdate"
        for line in text.splitlines()[:5]:
            if line.startswith("{"):
                json.loads(line)  # every process logs JSON lines
