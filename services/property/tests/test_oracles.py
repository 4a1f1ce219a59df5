"""Oracles: no answer tells a caller a PIN, a panel password or another office's records.

Whoever may change a PIN or a panel password without seeing it could send a guess: the right one
changed nothing (the same ETag, no history entry, ``pin`` missing from the event), any other replaced
it. Sent by such a caller, the value is written either way, so nothing in the answer depends on what
was stored.
"""

import pytest
from test_systems_equipment import PANEL, add_panel, system_path

from vigil_shared.testing import identity_with

CODES_VIEW = "confidential.installation_codes.view"
CODES_MODIFY = "confidential.installation_codes.modify"
BLIND = ("properties.view", "properties.modify", CODES_MODIFY, "history.view")


@pytest.fixture
def panel(api):
    response = api.post("/api/v1/system-kinds", json=PANEL)
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def site_with_pin(api, known):
    known(7)

    def make():
        created = api.post("/api/v1/customers/7/properties", json={"pin": "4821"})
        assert created.status_code == 201, created.json
        return created.json

    return make


def _pin_answer(caller, prop, pin):
    path = f"/api/v1/properties/{prop['id']}"
    before = caller.get(path)
    response = caller.patch(path, json={"pin": pin}, headers={"If-Match": before.headers["ETag"]})
    entries = [e for e in caller.get(f"{path}/history").json["items"] if e["field"] == "pin"]
    return response.status_code, before.headers["ETag"] != response.headers.get("ETag"), len(entries)


def test_sending_a_pin_one_cannot_see_answers_alike_right_or_wrong(api, site_with_pin):
    blind = api.as_(identity_with(*BLIND))
    right = _pin_answer(blind, site_with_pin(), "4821")
    wrong = _pin_answer(blind, site_with_pin(), "1111")
    assert right == wrong and right[0] == 200, (right, wrong)


def test_a_caller_who_sees_the_pin_changes_nothing_by_sending_it_back(api, site_with_pin):
    seer = api.as_(identity_with(*BLIND, CODES_VIEW))
    assert _pin_answer(seer, site_with_pin(), "4821") == (200, False, 0)


def _password_answer(caller, site, system, password):
    path = system_path(site, system["id"])
    before = caller.get(path)
    response = caller.patch(path, json={"password": password}, headers={"If-Match": before.headers["ETag"]})
    entries = [
        e for e in caller.get(f"/api/v1/properties/{site['id']}/history").json["items"] if e["field"] == "password"
    ]
    return response.status_code, before.headers["ETag"] != response.headers.get("ETag"), len(entries)


def test_sending_a_panel_password_one_cannot_see_answers_alike_right_or_wrong(api, known, panel):
    blind = api.as_(identity_with(*BLIND))
    answers = []
    known(7)
    for number, guess in enumerate(("5555-secret", "5555-guess")):
        site = api.post("/api/v1/customers/7/properties", json={"account_number": f"P-{number}"}).json
        system = add_panel(api, site, panel).json
        answers.append(_password_answer(blind, site, system, guess))
    assert answers[0] == answers[1] and answers[0][0] == 200, answers


def test_a_kind_in_use_elsewhere_is_refused_without_a_count(api, site, panel):
    """``catalogs.manage`` is company-wide, but its holder may work in one office only: how many systems of
    a kind the other offices have is not theirs to learn (the tag catalog's deletion counts nothing either)."""
    add_panel(api, site, panel)
    add_panel(api, site, panel)
    refused = api.delete(f"/api/v1/system-kinds/{panel['id']}")
    assert refused.status_code == 409
    assert "in_use" not in refused.json and "2" not in refused.json["detail"]


def test_a_transfer_to_another_offices_customer_answers_as_an_unknown_one(api, site_with_pin, known):
    """A transfer to a customer of an office where the caller may not modify properties answered 403 (an
    archived one 409), an unknown id 422: which ids are customers there, and which are archived, could be
    read off the answers. A property created under such a customer already answers as for an unknown one."""
    prop = site_with_pin()
    known(11, location_id=2)
    known(12, location_id=2, archived=True)
    mover = api.as_(identity_with("properties.view", "properties.modify"))
    path = f"/api/v1/properties/{prop['id']}/transfer"
    answers = {}
    for target in (11, 12, 99_999):
        response = mover.post(path, json={"to_customer_id": target})
        answers[target] = (response.status_code, response.json.get("errors"), response.json.get("detail"))
    assert answers[11] == answers[12] == answers[99_999], answers
    assert answers[11][0] == 422
    assert api.get(f"/api/v1/properties/{prop['id']}").json["customer_id"] == 7
