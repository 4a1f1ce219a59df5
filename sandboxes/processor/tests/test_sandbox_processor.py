import pytest

from vigil_sandbox_processor.app import create_app

SECRET = {"Authorization": "Bearer sk_test_unit"}


@pytest.fixture
def client(tmp_path):
    return create_app(str(tmp_path / "p.sqlite")).test_client()


def tokenize(client, number="4242424242424242", **extra):
    response = client.post("/v1/tokens", json={"number": number, "exp_month": 12, "exp_year": 2099} | extra)
    assert response.status_code == 201, response.json
    return response.json


def charge(client, token, key, amount=1000):
    return client.post(
        "/v1/charges",
        json={"token": token, "amount": amount, "currency": "USD"},
        headers=SECRET | {"Idempotency-Key": key},
    )


def test_a_token_keeps_only_safe_facts(client):
    facts = tokenize(client, holder="Dana Reyes")
    assert facts["token"].startswith("tok_") and facts["last4"] == "4242" and facts["brand"] == "visa"
    assert "4242424242424242" not in str(facts)
    assert client.get(f"/v1/tokens/{facts['token']}").status_code == 401
    assert client.get(f"/v1/tokens/{facts['token']}", headers=SECRET).json == facts
    assert (
        client.post("/v1/tokens", json={"number": "4242424242424241", "exp_month": 1, "exp_year": 2099}).status_code
        == 422
    )
    assert (
        client.post("/v1/tokens", json={"number": "4242424242424242", "exp_month": 1, "exp_year": 2001}).status_code
        == 422
    )


def test_charges_are_idempotent(client):
    token = tokenize(client)["token"]
    first = charge(client, token, "k1")
    again = charge(client, token, "k1")
    assert first.status_code == again.status_code == 201 and first.json["id"] == again.json["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert charge(client, token, "k1", amount=5).status_code == 422
    assert charge(client, token, "k2").json["id"] != first.json["id"]


@pytest.mark.parametrize(
    ("number", "code", "soft"),
    [
        ("4000000000000002", "card_declined", False),
        ("4000000000009995", "insufficient_funds", True),
        ("4000000000000069", "expired_card", False),
    ],
)
def test_declines(client, number, code, soft):
    response = charge(client, tokenize(client, number)["token"], f"k-{number}")
    assert response.status_code == 402 and response.json["failure_code"] == code
    assert response.json["soft_decline"] is soft


def test_network_error_card_answers_503_and_is_not_remembered(client):
    token = tokenize(client, "4000000000000119")["token"]
    assert charge(client, token, "k").status_code == 503
    assert charge(client, token, "k").status_code == 503


def test_refunds(client):
    token = tokenize(client)["token"]
    paid = charge(client, token, "k").json
    refund = client.post(
        "/v1/refunds", json={"charge": paid["id"], "amount": 400}, headers=SECRET | {"Idempotency-Key": "r1"}
    )
    assert refund.status_code == 201 and refund.json["amount"] == 400
    too_much = client.post(
        "/v1/refunds", json={"charge": paid["id"], "amount": 700}, headers=SECRET | {"Idempotency-Key": "r2"}
    )
    assert too_much.status_code == 400


def test_a_refused_refund_is_replayed_for_its_key_and_a_lost_answer_was_still_made(client):
    token = tokenize(client)["token"]
    paid = charge(client, token, "k").json

    def refund(key, amount=300):
        return client.post(
            "/v1/refunds", json={"charge": paid["id"], "amount": amount}, headers=SECRET | {"Idempotency-Key": key}
        )

    assert client.post("/sandbox/control", json={"refuse_refunds": 1}).json["refuse_refunds"] == 1
    refused = refund("r1")
    assert refused.status_code == 402 and refused.json["failure_code"] == "refund_refused"
    assert refund("r1").status_code == 402  # the key replays its refusal
    assert refund("r2").status_code == 201  # a new attempt
    client.post("/sandbox/control", json={"lose_refund_answers": 2})
    assert refund("r3").status_code == 503 and refund("r3").status_code == 503  # made, the answers lost
    replayed = refund("r3")
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/sandbox/charges/{paid['id']}").json["amount_refunded"] == 600  # r3 once
    assert client.post("/sandbox/control", json={"refuse_refunds": -1}).status_code == 400


def test_echo_declines_writes_the_card_and_token_into_the_next_declines(client):
    token = tokenize(client, "4000000000000002")["token"]
    assert client.post("/sandbox/control", json={"echo_declines": 1}).json["echo_declines"] == 1
    echoed = charge(client, token, "e1").json
    assert echoed["failure_code"] == f"card_declined_4000000000000002_{token}"
    assert "4000000000000002" in echoed["failure_message"] and token in echoed["failure_message"]
    assert charge(client, token, "e2").json["failure_code"] == "card_declined"  # the next one is plain


def test_bank_accounts(client):
    facts = client.post("/v1/tokens", json={"routing_number": "110000000", "account_number": "000123456789"}).json
    assert facts["kind"] == "ach" and facts["last4"] == "6789"
