import pytest

from vigil_billing import charging, processor
from vigil_billing.models import Payment
from vigil_billing.processor import ChargeResult, ProcessorUnavailable
from vigil_billing.tasks import CHARGE_RETRIES, charge_payment
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with


@pytest.fixture
def charges(monkeypatch, runtime):
    """Charges requested by requests, run by hand (``charges.run()``) as the worker would."""
    sent: list[int] = []
    monkeypatch.setattr(charging, "send", sent.append)

    class Charges:
        requested = sent

        @staticmethod
        def run(attempt=1):
            return [charge_payment(runtime, payment_id, attempt) for payment_id in sent]

    return Charges()


def invoice(api, customer_id=7, amount=1000):
    response = api.post(
        f"/api/v1/customers/{customer_id}/invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": amount, "tax_rate_bp": 0}], "issue": True},
    )
    assert response.status_code == 201, response.json
    return response.json


def card(api, sandbox, number="4242424242424242", customer_id=7):
    response = api.post(f"/api/v1/customers/{customer_id}/billing-methods", json={"token": sandbox.tokenize(number)})
    assert response.status_code == 201, response.json
    return response.json


def pay_by_card(api, sandbox, amount, number="4242424242424242"):
    """Customer 7 pays ``amount`` with a new card: the answer to the request (the worker charges it)."""
    method = card(api, sandbox, number)
    return api.post(
        "/api/v1/customers/7/payments", json={"method": "card", "amount": amount, "billing_method_id": method["id"]}
    )


def test_cash_pays_the_oldest_invoice_first_and_the_rest_is_credit(api, known, outbox):
    known(7)
    first, second = invoice(api, amount=1000), invoice(api, amount=500)
    paid = api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 1800})
    assert paid.status_code == 201, paid.json
    assert paid.json["status"] == "succeeded" and paid.json["unallocated"] == 300
    assert paid.json["allocations"] == [
        {"invoice_id": first["id"], "amount": 1000},
        {"invoice_id": second["id"], "amount": 500},
    ]
    assert api.get(f"/api/v1/invoices/{first['id']}").json["status"] == "paid"
    assert api.get("/api/v1/customers/7/billing").json["balance"] == -300
    assert outbox("payment.received")[0][1]["amount"] == 1800


def test_a_partial_check_leaves_the_invoice_partially_paid(api, known):
    known(7)
    first, second = invoice(api, amount=1000), invoice(api, amount=500)
    paid = api.post(
        "/api/v1/customers/7/payments",
        json={"method": "check", "amount": 600, "check_number": "1042", "invoice_ids": [second["id"]]},
    )
    assert paid.json["allocations"] == [
        {"invoice_id": first["id"], "amount": 100},
        {"invoice_id": second["id"], "amount": 500},
    ]
    assert api.get(f"/api/v1/invoices/{first['id']}").json["status"] == "partially_paid"
    assert api.post(f"/api/v1/invoices/{first['id']}/void").status_code == 409  # money is on it


def test_a_card_is_charged_by_the_worker_once(api, known, sandbox, charges, outbox):
    known(7)
    bill = invoice(api, amount=2500)
    created = pay_by_card(api, sandbox, 2500)
    assert created.status_code == 202 and created.json["status"] == "pending"
    assert created.headers["Location"].endswith(f"/api/v1/payments/{created.json['id']}")
    assert charges.run() == ["succeeded"]
    assert charges.run() == ["succeeded"]  # the task again (a redelivery): nothing more happens
    payment = api.get(f"/api/v1/payments/{created.json['id']}").json
    assert payment["status"] == "succeeded" and payment["allocations"] == [{"invoice_id": bill["id"], "amount": 2500}]
    assert len(outbox("payment.received")) == 1


def test_a_retried_charge_after_a_crash_charges_once(api, known, sandbox, charges, runtime, session):
    """The processor charged, then the worker died before recording it: the retry gets the same charge back."""
    known(7)
    created = pay_by_card(api, sandbox, 700)
    real = processor.processor()
    calls = []

    class CrashAfterCharging:
        def charge(self, token, amount, currency, key):
            calls.append(key)
            real.charge(token, amount, currency, key)
            raise SystemExit("worker killed")

    processor.use(CrashAfterCharging())
    with pytest.raises(SystemExit):
        charges.run()
    processor.use(real)
    assert charges.run() == ["succeeded"]
    session.expire_all()
    payment = session.get(Payment, created.json["id"])
    assert calls == [payment.processor_key]
    first_charge = payment.processor_charge_id
    # the processor answered the replay with the first charge: one charge for one payment
    from vigil_billing.models import BillingMethod

    token = session.get(BillingMethod, payment.billing_method_id).token
    again = real.charge(token, 700, "USD", payment.processor_key)
    assert again.charge_id == first_charge


def test_a_decline_fails_the_payment_with_the_processors_reason(api, known, sandbox, charges, outbox):
    known(7)
    invoice(api, amount=900)
    created = pay_by_card(api, sandbox, 900, "4000000000009995")
    assert charges.run() == ["failed"]
    payment = api.get(f"/api/v1/payments/{created.json['id']}").json
    assert (payment["failure_code"], payment["allocations"]) == ("insufficient_funds", [])
    assert outbox("payment.failed")[0][1]["soft_decline"] is True
    assert api.get("/api/v1/customers/7/billing").json["balance"] == 900


def test_an_unreachable_processor_is_retried_then_failed(api, known, sandbox, charges):
    known(7)
    pay_by_card(api, sandbox, 100)

    class Down:
        def charge(self, *args):
            raise ProcessorUnavailable("down")

    processor.use(Down())
    with pytest.raises(ProcessorUnavailable):
        charges.run(attempt=1)
    assert charges.run(attempt=CHARGE_RETRIES + 1) == ["failed"]


def test_refunds_come_out_of_credit_then_reopen_invoices(api, known, sandbox, charges, outbox):
    known(7)
    bill = invoice(api, amount=1000)
    created = pay_by_card(api, sandbox, 1200)
    charges.run()
    path = f"/api/v1/payments/{created.json['id']}"
    partial = api.post(f"{path}/refund", json={"amount": 500, "reason": "Goodwill"})
    assert partial.status_code == 200, partial.json
    assert (partial.json["amount_refunded"], partial.json["unallocated"]) == (500, 0)
    assert api.get(f"/api/v1/invoices/{bill['id']}").json["status"] == "partially_paid"
    assert api.post(f"{path}/refund", json={"amount": 800}).status_code == 422
    assert api.post(f"{path}/refund", json={}).json["amount_refunded"] == 1200
    assert api.get(f"/api/v1/invoices/{bill['id']}").json["status"] == "issued"
    assert [data["amount"] for _, data in outbox("payment.refunded")] == [500, 700]


def test_a_sub_customers_payment_is_refused_towards_the_parent(api, known):
    known(7)
    known(8, parent_id=7)
    refused = api.post("/api/v1/customers/8/payments", json={"method": "cash", "amount": 100})
    assert refused.status_code == 409
    assert refused.json["parent_payments"] == "/api/v1/customers/7/payments"
    invoice(api, customer_id=8, amount=400)  # billed to the parent
    paid = api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 400})
    assert paid.json["unallocated"] == 0


def test_payments_need_payments_create_where_the_customer_is(api, known, sandbox):
    known(7, location_id=1)
    other = api.as_(identity_with("billing.view", "payments.create", locations=(2,)))
    cash = {"method": "cash", "amount": 1}
    hidden = other.post("/api/v1/customers/7/payments", json=cash)
    assert_hidden(hidden, other.post(f"/api/v1/customers/{UNKNOWN_ID}/payments", json=cash), 422)  # "No such customer"
    viewer = api.as_(identity_with("billing.view", "billing.manage", locations=(1,)))
    assert viewer.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 1}).status_code == 403
    known(9)
    foreign = card(api, sandbox, customer_id=9)
    for bad in (
        {"method": "cash", "amount": 0},
        {"method": "cash", "amount": 1.5},
        {"method": "bitcoin", "amount": 1},
        {"method": "card", "amount": 1},
        {"method": "card", "amount": 1, "billing_method_id": foreign["id"]},
        {"method": "cash", "amount": 1, "billing_method_id": foreign["id"]},
        {"method": "cash", "amount": 1, "status": "succeeded"},
    ):
        assert api.post("/api/v1/customers/7/payments", json=bad).status_code == 422, bad


def test_charge_result_shape():
    assert ChargeResult("succeeded", "ch_1").succeeded and not ChargeResult("failed", None).succeeded


def test_a_processor_message_echoing_a_card_number_or_the_token_is_stored_masked():
    """The decline message is stored and shown to billing viewers: what looks like a card number or
    carries the token the charge was made with never is."""
    result = processor._result(
        402,
        {"status": "failed", "failure_message": "Card 4000 0000 0000 0002 (tok_secret_77) was declined."},
        "tok_secret_77",
    )
    assert result.failure_message == "Card *** (***) was declined."
    refused = processor._result(409, {"error": {"code": "x", "message": "refund of 4000000000000002 refused"}})
    assert refused.failure_message == "refund of *** refused"


def test_a_processor_failure_code_echoing_a_card_number_or_the_token_is_stored_masked():
    """The failure code is the processor's words as much as its message: it is stored, shown to billing
    viewers and carried by ``payment.failed`` (kept by the gateway's change feed in plaintext and sent to
    webhook subscribers), so a card number or the token in it never is."""
    result = processor._result(
        402, {"status": "failed", "failure_code": "declined_4000000000000002_tok_secret_77"}, "tok_secret_77"
    )
    assert result.failure_code == "declined_***_***"
    refused = processor._result(402, {"error": {"code": "card 4000 0000 0000 0002 refused", "message": "no"}})
    assert refused.failure_code == "card *** refused"
    assert processor._result(402, {"status": "failed", "failure_code": "card_declined"}).failure_code == "card_declined"


def sandbox_control(sandbox, **faults):
    import requests

    with requests.post(f"{sandbox.url}/sandbox/control", json=faults, timeout=5) as response:
        assert response.status_code == 200, response.text


def sandbox_charge(sandbox, charge_id):
    import requests

    with requests.get(f"{sandbox.url}/sandbox/charges/{charge_id}", timeout=5) as response:
        assert response.status_code == 200, response.text
        return response.json()


def paid_by_card(api, known, sandbox, charges, amount=1200):
    known(7)
    method = card(api, sandbox)
    created = api.post(
        "/api/v1/customers/7/payments", json={"method": "card", "amount": amount, "billing_method_id": method["id"]}
    )
    assert created.status_code == 202, created.json
    charges.run()
    return f"/api/v1/payments/{created.json['id']}"


def charge_of(session, path):
    session.expire_all()
    return session.get(Payment, int(path.rsplit("/", 1)[1])).processor_charge_id


def test_a_refund_asked_again_after_a_refusal_is_a_new_attempt(api, known, sandbox, charges, outbox, session):
    """The processor replays a refusal for its idempotency key: the refund asked again after one sends a
    new key, so it succeeds once the processor accepts."""
    path = paid_by_card(api, known, sandbox, charges)
    sandbox_control(sandbox, refuse_refunds=1)
    refused = api.post(f"{path}/refund", json={"amount": 500})
    assert refused.status_code == 409 and refused.json["code"] == "refund_refused", refused.json
    assert api.get(path).json["amount_refunded"] == 0
    again = api.post(f"{path}/refund", json={"amount": 500})
    assert again.status_code == 200, again.json
    assert again.json["amount_refunded"] == 500
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 500
    assert [data["amount"] for _, data in outbox("payment.refunded")] == [500]


def test_a_refund_whose_answer_was_lost_is_retried_with_its_key_and_refunds_once(api, known, sandbox, charges, session):
    """A timeout leaves the outcome unknown (the processor may have refunded): the next request sends the
    same key and gets the first answer, so the money goes back once."""
    path = paid_by_card(api, known, sandbox, charges)
    sandbox_control(sandbox, lose_refund_answers=processor.ATTEMPTS)  # every attempt of the adapter's
    lost = api.post(f"{path}/refund", json={"amount": 700})
    assert lost.status_code == 503, lost.json
    assert api.get(path).json["amount_refunded"] == 0
    retried = api.post(f"{path}/refund", json={"amount": 700})
    assert retried.status_code == 200, retried.json
    assert retried.json["amount_refunded"] == 700
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 700
    rest = api.post(f"{path}/refund", json={})
    assert rest.status_code == 200 and rest.json["amount_refunded"] == 1200, rest.json
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 1200


def test_a_lost_refund_is_asked_again_only_for_its_amount_and_never_refunds_twice(
    api, known, sandbox, charges, session
):
    """The processor may have made a refund whose answer was lost. Another amount under the same key is
    refused by the processor as a reused key; taking that for a refusal would end the attempt, and the
    next key would refund the lost amount a second time. The lost amount is kept: another amount is
    a 409 that changes nothing, and asking for it again gets the first answer."""
    path = paid_by_card(api, known, sandbox, charges)  # 1200
    sandbox_control(sandbox, lose_refund_answers=processor.ATTEMPTS)
    lost = api.post(f"{path}/refund", json={"amount": 400})
    assert lost.status_code == 503, lost.json
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 400  # made, answer lost
    others = [api.post(f"{path}/refund", json=other) for other in ({"amount": 300}, {})]
    resolved = api.post(f"{path}/refund", json={"amount": 400})
    # the money: what the processor refunded is what Vigil's books say, once
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 400
    assert resolved.status_code == 200, resolved.json
    assert (resolved.json["amount_refunded"], resolved.json["refund_pending_amount"]) == (400, None)
    for refused in others:
        assert refused.status_code == 409 and refused.json["code"] == "refund_unresolved", refused.json
        assert "400" in refused.json["detail"]
    rest = api.post(f"{path}/refund", json={})
    assert rest.status_code == 200 and rest.json["amount_refunded"] == 1200, rest.json
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 1200


def test_a_lost_refunds_amount_is_shown_while_it_is_unresolved(api, known, sandbox, charges):
    path = paid_by_card(api, known, sandbox, charges)
    assert api.get(path).json["refund_pending_amount"] is None
    sandbox_control(sandbox, lose_refund_answers=processor.ATTEMPTS)
    assert api.post(f"{path}/refund", json={"amount": 400}).status_code == 503
    assert api.get(path).json["refund_pending_amount"] == 400


def test_a_refusal_after_a_lost_answer_ends_the_attempt(api, known, sandbox, charges, session):
    """A definitive answer to the lost attempt (here a refusal the processor then replays) clears it:
    the next refund, of any amount, is a new attempt."""
    path = paid_by_card(api, known, sandbox, charges)
    sandbox_control(sandbox, refuse_refunds=1, lose_refund_answers=processor.ATTEMPTS)
    assert api.post(f"{path}/refund", json={"amount": 400}).status_code == 503
    refused = api.post(f"{path}/refund", json={"amount": 400})  # the replayed refusal
    assert refused.status_code == 409 and refused.json["code"] == "refund_refused", refused.json
    assert api.get(path).json["refund_pending_amount"] is None
    again = api.post(f"{path}/refund", json={"amount": 250})
    assert again.status_code == 200 and again.json["amount_refunded"] == 250, again.json
    assert sandbox_charge(sandbox, charge_of(session, path))["amount_refunded"] == 250


def test_the_due_job_charges_only_payments_whose_charge_was_lost_not_those_still_retrying(
    api, known, sandbox, charges, runtime, session
):
    """The beat's due job (every minute) charges card payments left pending because their charge task
    was lost. It took every payment pending for a minute, so those whose task was still retrying with
    backoff (the processor down: about five minutes of retries) were charged again inline each minute:
    a soak with a card the processor always refused with 503 saw each run take 32-47 s of the billing
    worker, and 770 billing events queued behind it. Now only a payment pending longer than the task's
    whole retry window counts as lost."""
    from datetime import date, timedelta  # noqa: PLC0415

    from vigil_billing.tasks import run_due  # noqa: PLC0415
    from vigil_shared.db import utcnow  # noqa: PLC0415

    known(7)
    retrying, lost = (pay_by_card(api, sandbox, amount).json["id"] for amount in (300, 400))
    for payment_id, age in ((retrying, timedelta(minutes=3)), (lost, charging.STALE_AFTER + timedelta(minutes=1))):
        session.get(Payment, payment_id).created_at = utcnow() - age
    session.commit()
    calls = []

    class Down:
        def charge(self, token, amount, currency, key):
            calls.append(amount)
            raise ProcessorUnavailable("down")

    processor.use(Down())
    run_due(runtime, date.today())
    assert calls == [400]


def test_a_charge_task_asks_the_processor_once_and_leaves_the_waiting_to_its_retry(
    api, known, sandbox, charges, monkeypatch
):
    """The adapter's own retries sleep between attempts; inside the worker that sleep held its one
    thread while every other billing task waited. A task asks once: Celery retries it later with the
    same idempotency key (``CHARGE_RETRIES``), and the web path keeps the adapter's quick retries."""
    known(7)
    payment_id = pay_by_card(api, sandbox, 300).json["id"]
    down = processor.HttpProcessor("http://127.0.0.1:9", "sk_test_unit", attempts=3, backoff=5.0)
    processor.use(down)
    sleeps: list[float] = []
    monkeypatch.setattr(processor.time, "sleep", sleeps.append)
    with pytest.raises(ProcessorUnavailable):
        charges.run()
    assert sleeps == [] and charges.requested == [payment_id]
    assert processor.background_processor().attempts == 1 and down.attempts == 3
    with pytest.raises(ProcessorUnavailable):  # a request still gets the adapter's retries before its 503
        down.charge("tok_x", 100, "USD", "key-1")
    assert sleeps == [5.0, 10.0]
