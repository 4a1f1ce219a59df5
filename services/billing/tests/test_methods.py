import json

import pytest

from vigil_billing.models import BillingMethod
from vigil_billing.processor import HttpProcessor, ProcessorUnavailable
from vigil_shared.testing import assert_hidden, identity_with, unknown_path


def test_a_card_is_added_from_its_token_with_safe_facts_only(api, known, sandbox, session):
    known(7)
    token = sandbox.tokenize("5555555555554444")
    created = api.post("/api/v1/customers/7/billing-methods", json={"token": token})
    assert created.status_code == 201, created.json
    body = created.json
    assert (body["kind"], body["brand"], body["last4"], body["exp_year"], body["holder"]) == (
        "card",
        "mastercard",
        "4444",
        2099,
        "Dana Reyes",
    )
    assert body["is_default"] is True and "token" not in body
    assert api.post("/api/v1/customers/7/billing-methods", json={"token": token}).status_code == 409
    second = api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize(), "is_default": True})
    assert second.json["is_default"] is True
    session.expire_all()
    assert [m.is_default for m in session.query(BillingMethod).order_by(BillingMethod.id)] == [False, True]


def test_a_card_number_is_refused_and_never_echoed(api, known, sandbox, session):
    known(7)
    response = api.post(
        "/api/v1/customers/7/billing-methods", json={"token": "tok_x", "number": "4242424242424242", "cvc": "123"}
    )
    assert response.status_code == 422
    assert "4242424242424242" not in response.get_data(as_text=True)
    assert api.post("/api/v1/customers/7/billing-methods", json={"token": "tok_unknown"}).status_code == 422
    assert session.query(BillingMethod).count() == 0


def test_an_unreachable_processor_answers_503(api, known, sandbox):
    from vigil_billing import processor

    known(7)
    processor.use(HttpProcessor("http://127.0.0.1:9", "sk_test_unit", attempts=2, backoff=0.01))
    response = api.post("/api/v1/customers/7/billing-methods", json={"token": "tok_abc"})
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_billing_methods_are_scoped_and_removed(api, known, sandbox):
    known(7, location_id=1)
    method = api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize()}).json
    outsider = api.as_(identity_with("billing.view", "billing_methods.manage", locations=(2,)))
    path = f"/api/v1/billing-methods/{method['id']}"
    unknown = unknown_path(path, method["id"])
    assert_hidden(outsider.get(path), outsider.get(unknown))
    assert_hidden(outsider.delete(path), outsider.delete(unknown))
    viewer = api.as_(identity_with("billing.view", locations=(1,)))
    assert viewer.get("/api/v1/customers/7/billing-methods").json["total"] == 1
    assert viewer.delete(f"/api/v1/billing-methods/{method['id']}").status_code == 403
    assert viewer.post("/api/v1/customers/7/billing-methods", json={"token": "tok_abcd"}).status_code == 403
    assert api.delete(f"/api/v1/billing-methods/{method['id']}").status_code == 204
    assert api.get(f"/api/v1/billing-methods/{method['id']}").status_code == 404


def test_the_adapter_charges_once_per_key_and_reports_declines(sandbox):
    from vigil_billing import processor

    adapter = processor.processor()
    token = sandbox.tokenize()
    first = adapter.charge(token, 1500, "USD", "pay-1")
    again = adapter.charge(token, 1500, "USD", "pay-1")
    assert first.succeeded and first.charge_id == again.charge_id
    soft = adapter.charge(sandbox.tokenize("4000000000009995"), 1500, "USD", "pay-2")
    assert (soft.status, soft.failure_code, soft.soft_decline) == ("failed", "insufficient_funds", True)
    hard = adapter.charge(sandbox.tokenize("4000000000000002"), 1500, "USD", "pay-3")
    assert (hard.failure_code, hard.soft_decline) == ("card_declined", False)
    refund = adapter.refund(first.charge_id, 500, "refund-1")
    assert refund.succeeded


def test_the_adapter_gives_up_on_a_network_error_card(sandbox):
    import pytest

    from vigil_billing import processor

    token = sandbox.tokenize("4000000000000119")
    with pytest.raises(processor.ProcessorUnavailable):
        processor.processor().charge(token, 100, "USD", "pay-net")


def test_a_customer_keeps_one_default_method_whatever_runs_at_once(api, known, sandbox, session):
    """Each make-default cleared the default it saw and set its own: four at once left the customer with
    several defaults (PostgreSQL; on SQLite writers take turns anyway)."""
    import threading

    known(7)
    methods = [
        api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize()}).json for _ in range(4)
    ]
    for _ in range(3):
        barrier, answers = threading.Barrier(len(methods)), []

        def make_default(method, barrier=barrier, answers=answers):
            barrier.wait()
            answers.append(api.post(f"/api/v1/billing-methods/{method['id']}/make-default").status_code)

        threads = [threading.Thread(target=make_default, args=(method,)) for method in methods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(answers) <= {200, 409}, answers
        session.expire_all()
        assert [m.is_default for m in session.query(BillingMethod)].count(True) == 1


def test_two_first_methods_added_at_once_leave_one_default(api, known, sandbox, session):
    """The first method added becomes the default: two added at once each saw none and both became it
    (SQLite, before a read for update took the write lock there)."""
    import threading

    for customer_id in range(11, 31):
        known(customer_id)
        tokens = [sandbox.tokenize() for _ in range(4)]
        barrier, answers = threading.Barrier(len(tokens)), []

        def add(token, customer_id=customer_id, barrier=barrier, answers=answers):
            barrier.wait()
            answers.append(
                api.post(f"/api/v1/customers/{customer_id}/billing-methods", json={"token": token}).status_code
            )

        threads = [threading.Thread(target=add, args=(token,)) for token in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [201] * 4, answers
        session.expire_all()
        defaults = session.query(BillingMethod).filter_by(customer_id=customer_id, is_default=True).count()
        assert defaults == 1


class _Answer:
    def __init__(self, status, body):
        self.status, self.data = status, json.dumps(body).encode()


def _answering(status, body, attempts=1):
    """An adapter whose processor answers every request with ``status`` and ``body``."""
    adapter = HttpProcessor("http://processor.invalid", "sk_test_unit", attempts=attempts, backoff=0.0)
    adapter.http = type("Http", (), {"request": lambda self, *a, **k: _Answer(status, body)})()
    return adapter


MALFORMED_TOKENS = [
    {"kind": "card", "brand": "visa", "last4": "4242"},  # no token
    {"token": None, "last4": "4242"},
    {"token": {"id": "tok"}, "last4": "4242"},
    {"token": "tok_1", "last4": None},
    {"token": "tok_1", "last4": "42a2"},
    {"token": "tok_1", "last4": "4242", "kind": "bitcoin"},
    {"token": "tok_1", "last4": "4242", "exp_month": "twelve", "exp_year": 2099},
    {"token": "tok_1", "last4": "4242", "exp_month": 13, "exp_year": 2099},
    {"token": "tok_1", "last4": "4242", "brand": {"name": "visa"}},
    {"token": "tok_1", "last4": "4242", "holder": ["Dana"]},
    {"token": "x" * 101, "last4": "4242"},
]


@pytest.mark.parametrize("facts", MALFORMED_TOKENS)
def test_a_malformed_token_answer_is_an_outage_and_stores_nothing(api, known, session, facts):
    """A 200 that lacks what the processor's contract promises is no fact to keep: 503, nothing written."""
    from vigil_billing import processor

    known(7)
    processor.use(_answering(200, facts))
    response = api.post("/api/v1/customers/7/billing-methods", json={"token": "tok_1"})
    assert response.status_code == 503, response.json
    assert response.headers["Content-Type"] == "application/problem+json" and response.headers["Retry-After"]
    assert session.query(BillingMethod).count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"status": "succeeded"},  # no charge id
        {"status": "succeeded", "id": {"x": 1}},
        {"status": "succeeded", "id": ""},
        ["succeeded"],
    ],
)
def test_a_malformed_charge_or_refund_answer_is_an_outage(body):
    adapter = _answering(200, body)
    with pytest.raises(ProcessorUnavailable):
        adapter.charge("tok_1", 100, "USD", "key-1")
    with pytest.raises(ProcessorUnavailable):
        adapter.refund("ch_1", 100, "key-2")


def test_a_refusal_with_odd_fields_keeps_text_only():
    refused = _answering(402, {"status": "failed", "id": {"x": 1}, "failure_code": ["a"], "soft_decline": "no"})
    result = refused.charge("tok_1", 100, "USD", "key-1")
    assert result.status == "failed" and result.charge_id is None and isinstance(result.failure_code, str)
    assert result.soft_decline is False
