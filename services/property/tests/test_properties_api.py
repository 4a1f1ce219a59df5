import pytest
from sqlalchemy import select

from vigil_property import customer_client
from vigil_property.models import KnownCustomer, Property
from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.testing import identity_with

HOME = {"account_number": "A-1001", "address": "12 Elm Street", "city": "Ottawa", "postal_code": "K1A 0B1"}


class FakeCustomerService:
    """Stands in for ``customer_client.customer_exists`` and records which ids it was asked about."""

    def __init__(self):
        self.asked: list[int] = []
        self.answer: bool | Exception = AssertionError("the customer service should not be asked")

    def __call__(self, customer_id: int) -> bool:
        self.asked.append(customer_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def customer_service(monkeypatch):
    fake = FakeCustomerService()
    monkeypatch.setattr(customer_client, "customer_exists", fake)
    return fake


def known(session, customer_id, deleted=False):
    session.add(KnownCustomer(customer_id=customer_id, deleted=deleted))
    session.commit()


def test_create_for_a_customer_the_replica_knows(api, session, customer_service):
    known(session, 7)
    created = api.post("/api/v1/customers/7/properties", json=HOME | {"address": "  12 Elm Street "})
    assert created.status_code == 201, created.json
    body = created.json
    assert body["customer_id"] == 7 and body["address"] == "12 Elm Street" and body["account_number"] == "A-1001"
    assert created.headers["Location"].endswith(f"/api/v1/properties/{body['id']}")
    read = api.get(f"/api/v1/properties/{body['id']}")
    assert read.status_code == 200 and read.json == body
    assert read.headers["ETag"] == created.headers["ETag"] == f'"{body["id"]}.1"'
    assert customer_service.asked == []


def test_replica_miss_asks_the_customer_service_and_remembers_the_answer(api, session, customer_service):
    customer_service.answer = True
    assert api.post("/api/v1/customers/8/properties", json=HOME).status_code == 201
    assert customer_service.asked == [8]
    assert session.scalar(select(KnownCustomer.deleted).where(KnownCustomer.customer_id == 8)) is False
    assert api.post("/api/v1/customers/8/properties", json={"address": "2 Oak Road"}).status_code == 201
    assert customer_service.asked == [8]  # the second create used the replica


def test_customer_unknown_to_the_customer_service_is_a_validation_problem(api, session, customer_service):
    customer_service.answer = False
    response = api.post("/api/v1/customers/9/properties", json=HOME)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["errors"] == {"customer_id": ["No such customer."]}
    assert session.scalars(select(Property)).all() == []
    assert session.scalars(select(KnownCustomer)).all() == []


def test_customer_service_unavailable_answers_503(api, session, customer_service):
    customer_service.answer = Problem(503, "down", type=UNAVAILABLE)
    response = api.post("/api/v1/customers/9/properties", json=HOME)
    assert response.status_code == 503 and response.json["status"] == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert session.scalars(select(Property)).all() == []


def test_deleted_customer_is_refused_without_asking(api, session, customer_service):
    known(session, 10, deleted=True)
    response = api.post("/api/v1/customers/10/properties", json=HOME)
    assert response.status_code == 422 and response.json["errors"] == {"customer_id": ["No such customer."]}
    assert customer_service.asked == []


def test_account_number_is_unique(api, session, customer_service):
    known(session, 7)
    known(session, 8)
    assert api.post("/api/v1/customers/7/properties", json=HOME).status_code == 201
    again = api.post("/api/v1/customers/8/properties", json={"account_number": " A-1001 "})
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json["errors"] == {"account_number": ["Already in use."]}
    assert api.post("/api/v1/customers/8/properties", json={"account_number": None}).status_code == 201
    assert api.post("/api/v1/customers/8/properties", json={}).status_code == 201  # many without a number


def test_validation_errors_name_the_field(api, session, customer_service):
    known(session, 7)
    response = api.post("/api/v1/customers/7/properties",
                        json={"account_number": "x" * 41, "city": 5, "customer_id": 3, "extra": 1})
    assert response.status_code == 422
    assert response.json["type"] == "urn:vigil:problem:validation"
    assert set(response.json["errors"]) == {"account_number", "city", "customer_id", "extra"}
    assert api.post("/api/v1/customers/7/properties", data="{", content_type="application/json").status_code == 400
    assert api.post("/api/v1/customers/7/properties", json=[HOME]).status_code == 422


def test_missing_property_is_404_problem(api):
    response = api.get("/api/v1/properties/12345")
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/problem+json"


def test_requests_without_a_gateway_identity_are_refused(api):
    anonymous = api.as_(None)
    for response in (anonymous.get("/api/v1/properties/1"), anonymous.get("/api/v1/customers/1/properties"),
                     anonymous.post("/api/v1/customers/1/properties", json=HOME)):
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"


def test_permissions_are_enforced(api, session):
    known(session, 7)
    viewer = api.as_(identity_with("properties.view", username="viewer"))
    assert viewer.get("/api/v1/customers/7/properties").status_code == 200
    refused = viewer.post("/api/v1/customers/7/properties", json=HOME)
    assert refused.status_code == 403 and refused.json["permission"] == "properties.create"
    nobody = api.as_(identity_with(username="nobody"))
    assert nobody.get("/api/v1/properties/1").json["permission"] == "properties.view"


def test_list_is_paginated_per_customer_with_links(api, session):
    known(session, 7)
    known(session, 8)
    for i in range(23):
        api.post("/api/v1/customers/7/properties", json={"address": f"{i} Main Street"})
    api.post("/api/v1/customers/8/properties", json={"address": "Elsewhere"})
    first = api.get("/api/v1/customers/7/properties")
    assert first.status_code == 200
    assert first.json["total"] == 23 and first.json["page"] == 1 and first.json["per_page"] == 20
    assert [p["address"] for p in first.json["items"][:2]] == ["0 Main Street", "1 Main Street"]
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    second = api.get("/api/v1/customers/7/properties?page=2")
    assert len(second.json["items"]) == 3 and 'rel="prev"' in second.headers["Link"]
    assert api.get("/api/v1/customers/8/properties").json["total"] == 1
    assert api.get("/api/v1/customers/99/properties").json == {"items": [], "page": 1, "per_page": 20, "total": 0}
    assert api.get("/api/v1/customers/7/properties?per_page=101").status_code == 422


def test_readyz_reports_database_and_broker(api):
    response = api.get("/readyz")
    assert response.status_code == 200 and set(response.json["checks"]) == {"database", "broker"}
