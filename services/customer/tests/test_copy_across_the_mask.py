"""An operation never carries or reveals a value the caller cannot see at its source.

The caller below sees SSNs, birthdates and installation codes masked in office 1 and unmasked in
office 2, and may create and move records in both. Copying or moving a record from office 1 to 2
must not hand them what office 1 masks.
"""

from helpers import create, customer, lead

from vigil_shared.identity import Identity
from vigil_shared.permissions import LOCATION_PERMISSIONS

CONFIDENTIAL_VIEWS = {"confidential.ssn.view", "confidential.birthdate.view", "confidential.installation_codes.view"}
MASKED_HERE = frozenset(
    LOCATION_PERMISSIONS
    - CONFIDENTIAL_VIEWS
    - {"confidential.ssn.modify", "confidential.birthdate.modify", "confidential.installation_codes.modify"}
)
# office 1: everything but the confidential permissions; office 2: everything
SPLIT = Identity(subject="user:split", username="split", locations={1: MASKED_HERE, 2: LOCATION_PERMISSIONS})
SECRET = dict(ssn="123-45-4893", birthdate="1970-04-01")


def test_a_copy_into_an_office_with_ssn_visibility_carries_no_masked_value(api):
    original = create(api, customer(**SECRET, abort_code="7777", spouse="Sam"))
    caller = api.as_(SPLIT)
    shown = caller.get(f"/api/v1/customers/{original['id']}").json
    assert shown["ssn"] == "***-**-4893" and shown["birthdate"] == "***"
    copied = caller.post(f"/api/v1/customers/{original['id']}/duplicate", json={"location_id": 2})
    assert copied.status_code == 201, copied.json
    assert copied.json["ssn"] is None and copied.json["birthdate"] is None and copied.json["spouse"] == "Sam"
    stored = api.get(f"/api/v1/customers/{copied.json['id']}").json
    assert stored["ssn"] is None and stored["birthdate"] is None and stored["location_id"] == 2
    history = api.get(f"/api/v1/customers/{copied.json['id']}/history?field=ssn").json
    assert history["total"] == 0


def test_a_copy_keeps_what_the_caller_may_read_at_the_source(api):
    original = create(api, customer(location_id=2, **SECRET))
    copied = api.as_(SPLIT).post(f"/api/v1/customers/{original['id']}/duplicate", json={})
    assert copied.status_code == 201 and copied.json["ssn"] == "123-45-4893"
    assert copied.json["birthdate"] == "1970-04-01"


def test_a_copy_into_a_masked_office_answers_masked_and_sent_values_still_count(api):
    original = create(api, customer(location_id=2, **SECRET))
    copied = api.as_(SPLIT).post(f"/api/v1/customers/{original['id']}/duplicate", json={"location_id": 1})
    assert copied.status_code == 201 and copied.json["ssn"] == "***-**-4893"  # masked by the target's rules
    typed = api.as_(SPLIT).post(
        f"/api/v1/customers/{original['id']}/duplicate", json={"location_id": 2, "ssn": "***-**-4893"}
    )
    assert typed.status_code == 422 and "ssn" in typed.json["errors"]


def test_a_copy_skips_values_of_custom_fields_no_longer_defined(api):
    made = api.post("/api/v1/custom-fields", json={"key": "gate", "label": "Gate", "type": "text"}).json
    original = create(api, customer(custom_fields={"gate": "1234"}))
    api.delete(f"/api/v1/custom-fields/{made['id']}")
    copied = api.post(f"/api/v1/customers/{original['id']}/duplicate", json={})
    assert copied.status_code == 201, copied.json
    assert copied.json["custom_fields"] == {}


def test_converting_a_lead_into_an_office_that_would_unmask_it_is_refused(api):
    prospect = create(api, lead(**SECRET, account_type="residential"))
    caller = api.as_(SPLIT)
    refused = caller.post(f"/api/v1/customers/{prospect['id']}/convert", json={"location_id": 2, "sold_by": "r"})
    assert refused.status_code == 403, refused.json
    assert {"ssn", "birthdate"} <= set(refused.json["errors"])
    assert "4893" not in refused.text and "1970" not in refused.text
    assert api.get(f"/api/v1/customers/{prospect['id']}").json["kind"] == "lead"
    done = caller.post(f"/api/v1/customers/{prospect['id']}/convert", json={"location_id": 1, "sold_by": "r"})
    assert done.status_code == 200 and done.json["ssn"] == "***-**-4893"
    assert (
        api.post(
            f"/api/v1/customers/{create(api, lead(**SECRET))['id']}/convert",
            json={"location_id": 2, "sold_by": "r", "account_type": "commercial"},
        ).status_code
        == 200
    )


def test_converting_a_lead_without_hidden_values_across_offices_works(api):
    prospect = create(api, lead(account_type="residential"))
    done = api.as_(SPLIT).post(f"/api/v1/customers/{prospect['id']}/convert", json={"location_id": 2, "sold_by": "r"})
    assert done.status_code == 200, done.json


def test_moving_a_record_to_an_office_that_would_unmask_it_is_refused(api):
    record = create(api, customer(**SECRET))
    caller = api.as_(SPLIT)
    moved = caller.patch(f"/api/v1/customers/{record['id']}", json={"location_id": 2})
    assert moved.status_code == 403 and {"ssn", "birthdate"} <= set(moved.json["errors"])
    assert api.get(f"/api/v1/customers/{record['id']}").json["location_id"] == 1
    plain = create(api, customer())
    assert caller.patch(f"/api/v1/customers/{plain['id']}", json={"location_id": 2}).status_code == 200


def test_a_contact_passcode_or_a_cleared_ssn_in_history_also_blocks_the_move(api):
    record = create(api, customer())
    api.post(
        f"/api/v1/customers/{record['id']}/contacts", json={"type": "emergency", "name": "Ann", "passcode": "swordfish"}
    )
    moved = api.as_(SPLIT).patch(f"/api/v1/customers/{record['id']}", json={"location_id": 2})
    assert moved.status_code == 403 and set(moved.json["errors"]) == {"contacts.passcode"}
    cleared = create(api, customer(ssn="123-45-4893"))
    api.patch(f"/api/v1/customers/{cleared['id']}", json={"ssn": None})
    moved = api.as_(SPLIT).patch(f"/api/v1/customers/{cleared['id']}", json={"location_id": 2})
    assert moved.status_code == 403 and set(moved.json["errors"]) == {"history.ssn"}


def test_a_customer_with_properties_does_not_move_where_their_pins_would_show(api, runtime):
    """The property service masks PINs and alarm passwords by the owner's location."""
    from vigil_customer.tasks import event_consumer
    from vigil_shared.testing import incoming_event

    owner = create(api, customer())
    data = {"property_id": 77, "customer_id": owner["id"], "account_number": "ACC-77"}
    assert event_consumer(runtime).consume(incoming_event("property.created", data, source="property"))
    moved = api.as_(SPLIT).patch(f"/api/v1/customers/{owner['id']}", json={"location_id": 2})
    assert moved.status_code == 403 and set(moved.json["errors"]) == {"properties.pin"}
    assert api.patch(f"/api/v1/customers/{owner['id']}", json={"location_id": 2}).status_code == 200
