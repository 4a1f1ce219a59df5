from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from vigil_billing.customer_client import CustomerFacts
from vigil_billing.models import KnownCustomer
from vigil_billing.tasks import event_consumer
from vigil_shared.messaging.contracts import SUBSCRIPTIONS, new_event, payload_type
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with


def message(event_type, customer_id, occurred_at=None, **data):
    event = new_event(payload_type(event_type)(customer_id=customer_id, **data), source="customer").to_message()
    if occurred_at is not None:
        event["occurred_at"] = occurred_at.isoformat()
    return event


def replica(session, customer_id) -> KnownCustomer | None:
    session.expire_all()
    return session.scalar(select(KnownCustomer).where(KnownCustomer.customer_id == customer_id))


def test_handles_exactly_the_subscribed_events(runtime):
    consumer = event_consumer(runtime)
    assert set(consumer.handlers) == SUBSCRIPTIONS["billing"]


def test_customer_events_keep_location_kind_parent_and_archive_state(runtime, session):
    consumer = event_consumer(runtime)
    assert consumer.consume(message("customer.created", 3, location_id=2, kind="lead")) is True
    known = replica(session, 3)
    assert (known.location_id, known.kind, known.parent_id, known.archived) == (2, "lead", None, False)
    consumer.consume(message("customer.converted", 3, location_id=2))
    assert replica(session, 3).kind == "customer"
    consumer.consume(message("customer.updated", 3, changed=["parent_customer_id"], parent_id=9))
    assert replica(session, 3).parent_id == 9
    consumer.consume(message("customer.updated", 3, changed=["phone"]))  # says nothing of the parent
    assert replica(session, 3).parent_id == 9
    consumer.consume(message("customer.updated", 3, changed=["archived_at"], archived=True))
    assert replica(session, 3).archived is True
    consumer.consume(message("customer.updated", 3, changed=["parent_customer_id"], parent_id=None))  # unlinked
    known = replica(session, 3)
    assert known.parent_id is None and known.archived is True and known.location_id == 2


def test_an_older_event_does_not_move_the_customer_back(runtime, session):
    consumer = event_consumer(runtime)
    now = datetime.now(UTC)
    consumer.consume(message("customer.updated", 4, now, changed=["location_id"], location_id=2))
    consumer.consume(message("customer.created", 4, now - timedelta(minutes=1), location_id=1))
    assert replica(session, 4).location_id == 2


def test_a_repeated_event_is_applied_once(runtime, session):
    consumer = event_consumer(runtime)
    event = message("customer.created", 5, location_id=1)
    assert consumer.consume(event) is True
    assert consumer.consume(event) is False  # a repeat: nothing applied twice
    assert replica(session, 5).location_id == 1


def test_customer_deleted_tombstones_the_customer(api, runtime, session):
    consumer = event_consumer(runtime)
    consumer.consume(message("customer.created", 6, location_id=1))
    consumer.consume(message("customer.deleted", 6))
    assert replica(session, 6).deleted is True
    consumer.consume(message("customer.updated", 6, changed=["location_id"], location_id=2))
    assert replica(session, 6).deleted is True
    assert api.get("/api/v1/customers/6/billing").status_code == 404


def test_account_is_scoped_to_the_customers_location(api, known):
    known(7, location_id=1)
    account = api.get("/api/v1/customers/7/billing")
    assert account.status_code == 200
    assert account.json == {
        "customer_id": 7,
        "location_id": 1,
        "kind": "customer",
        "parent_id": None,
        "archived": False,
        "currency": "USD",
        "balance": 0,
        "past_due": 0,
        "open_invoices": 0,
    }
    elsewhere = api.as_(identity_with("billing.view", locations=(2,)))
    assert_hidden(
        elsewhere.get("/api/v1/customers/7/billing"), elsewhere.get(f"/api/v1/customers/{UNKNOWN_ID}/billing")
    )
    nobody = api.as_(identity_with("customers.view", locations=(1,)))
    assert nobody.get("/api/v1/customers/7/billing").status_code == 403


def test_an_unknown_customer_is_asked_of_the_customer_service_once(api, customer_service, session):
    customer_service.customers[11] = CustomerFacts(11, 1, kind="customer", parent_id=3)
    assert api.get("/api/v1/customers/11/billing").json["parent_id"] == 3
    assert api.get("/api/v1/customers/11/billing").status_code == 200
    assert customer_service.asked == [11]
    assert api.get("/api/v1/customers/12/billing").status_code == 404


def test_settings_are_read_by_billing_viewers_and_changed_by_catalog_managers(api):
    settings = api.get("/api/v1/billing/settings")
    assert settings.status_code == 200 and settings.json["currency"] == "USD" and settings.headers["ETag"]
    clerk = api.as_(identity_with("billing.view", "billing.manage", locations=(1,)))
    assert clerk.get("/api/v1/billing/settings").status_code == 200
    assert clerk.patch("/api/v1/billing/settings", json={"currency": "CAD"}).status_code == 403
    changed = api.patch(
        "/api/v1/billing/settings",
        json={"currency": "CAD", "tax_rate_bp": 1300, "mmr_items": [{"key": "monitoring", "label": "Monitoring"}]},
        headers={"If-Match": settings.headers["ETag"]},
    )
    assert changed.status_code == 200 and changed.json["currency"] == "CAD"
    stale = api.patch(
        "/api/v1/billing/settings", json={"tax_rate_bp": 5}, headers={"If-Match": settings.headers["ETag"]}
    )
    assert stale.status_code == 412
    for bad in (
        {"currency": "XXX"},
        {"tax_rate_bp": 1.5},
        {"mmr_items": [{"key": "a", "label": "A"}, {"key": "a", "label": "B"}]},
        {"mmr_items": [{"key": "Bad Key", "label": "A"}]},
        {"version": 4},
    ):
        assert api.patch("/api/v1/billing/settings", json=bad).status_code == 422, bad
