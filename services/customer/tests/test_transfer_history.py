"""A property moved to another customer (a new homeowner) shows in both customers' history."""

from helpers import create, customer

from vigil_customer.tasks import event_consumer
from vigil_shared.testing import incoming_event


def transfer_event(**data) -> dict:
    return incoming_event("property.transferred", data, source="property", request_id="req-transfer")


def test_a_transfer_is_recorded_in_both_customers_history(api, runtime):
    seller = create(api, customer(first_name="Seller"))
    buyer = create(api, customer(first_name="Buyer"))
    event = transfer_event(
        property_id=31,
        from_customer_id=seller["id"],
        to_customer_id=buyer["id"],
        account_number="ACC-31",
        actor_id="7",
        actor_name="office-anna",
        source="api",
        reason="house sold",
    )
    consumer = event_consumer(runtime)
    assert consumer.consume(event) is True
    assert consumer.consume(event) is False, "a redelivered transfer is not recorded twice"
    for record, action in ((seller, "property.transferred_out"), (buyer, "property.transferred_in")):
        entries = api.get(f"/api/v1/customers/{record['id']}/history").json["items"]
        moved = [e for e in entries if e["action"] == action]
        assert len(moved) == 1, entries
        assert moved[0]["target_id"] == 31 and moved[0]["old_value"] == str(seller["id"])
        assert moved[0]["new_value"] == str(buyer["id"]) and moved[0]["actor_name"] == "office-anna"


def test_a_transfer_from_a_deleted_customer_is_recorded_for_the_buyer_only(api, runtime):
    buyer = create(api, customer(first_name="Buyer"))
    consumer = event_consumer(runtime)
    assert consumer.consume(transfer_event(property_id=32, from_customer_id=999999, to_customer_id=buyer["id"]))
    entries = api.get(f"/api/v1/customers/{buyer['id']}/history").json["items"]
    assert [e["action"] for e in entries if e["action"].startswith("property.")] == ["property.transferred_in"]
