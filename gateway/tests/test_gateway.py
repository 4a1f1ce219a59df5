import base64
import time

import jwt
import pytest
from conftest import ADMIN_PASSWORD, SECRET_KEY, TEST_PASSWORDS
from sqlalchemy import select

from vigil_gateway.models import User
from vigil_gateway.routing import service_for
from vigil_gateway.tokens import AUDIENCE, ISSUER
from vigil_gateway.users import ensure_admin


def is_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["status"] == status
    return response.json


def test_token_for_good_credentials(client):
    response = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    assert response.json["token_type"] == "Bearer" and response.json["expires_in"] == 900
    assert response.json["refresh_token"].startswith("vrt_")


@pytest.mark.parametrize("body", [{"username": "admin", "password": "wrong"}, {"username": "ghost", "password": "x"}])
def test_token_refused_for_bad_credentials(client, body):
    problem = is_problem(client.post("/api/v1/auth/token", json=body), 401)
    assert problem["detail"] == "Invalid username or password."


def test_token_refused_for_disabled_user(client, db):
    with db.transaction() as session:
        session.scalar(select(User)).active = False
    is_problem(client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}), 401)


def test_token_request_validation(client):
    assert is_problem(client.post("/api/v1/auth/token", json={"username": "admin"}), 422)["errors"] == {
        "password": ["Missing data for required field."]
    }
    is_problem(client.post("/api/v1/auth/token", data="{oops", content_type="application/json"), 400)
    is_problem(client.post("/api/v1/auth/token", data="username=admin", content_type="text/plain"), 415)


@pytest.mark.parametrize("path", ["/api/v1/customers", "/api/v1/customers/1", "/api/v1/nowhere"])
def test_every_api_route_needs_a_token(client, path):
    problem = is_problem(client.get(path), 401)
    assert problem["type"] == "urn:vigil:problem:unauthenticated"


def test_invalid_and_expired_tokens_are_refused(client, db):
    is_problem(client.get("/api/v1/customers", headers={"Authorization": "Bearer not-a-jwt"}), 401)
    expired = jwt.encode(
        {"sub": "1", "sid": "s", "typ": "access", "iss": ISSUER, "aud": AUDIENCE, "iat": 1, "exp": 2, "jti": "x"},
        SECRET_KEY,
        algorithm="HS256",
    )
    is_problem(client.get("/api/v1/customers", headers={"Authorization": f"Bearer {expired}"}), 401)
    forged = jwt.encode(
        {
            "sub": "1",
            "sid": "s",
            "typ": "access",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": "x",
        },
        "another-key" * 4,
        algorithm="HS256",
    )
    is_problem(client.get("/api/v1/customers", headers={"Authorization": f"Bearer {forged}"}), 401)
    nested = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode().rstrip("=")  # parsed before the signature
    is_problem(client.get("/api/v1/customers", headers={"Authorization": f"Bearer {nested}.e30.x"}), 401)


def test_disabling_a_user_stops_its_token_at_once(client, auth, db):
    """Rights are cached per session while nothing changes; a deactivation applies on the next call."""
    other = client.post("/api/v1/users", headers=auth, json={"username": "temp-user", "password": "x" * 12}).json
    token = client.post("/api/v1/auth/token", json={"username": "temp-user", "password": "x" * 12}).json
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # now from the cache
    assert client.patch(f"/api/v1/users/{other['id']}", headers=auth, json={"active": False}).status_code == 200
    is_problem(client.get("/api/v1/me", headers=headers), 401)


def test_proxy_forwards_request_and_signed_identity(client, auth):
    response = client.patch(
        "/api/v1/customers/5?x=1&y=2", json={"a": 1}, headers=auth | {"X-Request-ID": "req-42", "If-Match": '"5.1"'}
    )
    assert response.status_code == 200
    echoed = response.json
    assert echoed["method"] == "PATCH" and echoed["path"] == "/api/v1/customers/5" and echoed["query"] == "x=1&y=2"
    assert echoed["body"] == '{"a": 1}' or echoed["body"] == '{"a":1}'
    assert echoed["user"] == "admin" and "users.manage" in echoed["permissions"]
    assert len(echoed["locations"]) == 1, "the first admin comes with a first office location"
    assert "customers.delete" in next(iter(echoed["locations"].values())), "an admin holds everything everywhere"
    assert echoed["authorization"] is None, "the caller's bearer token must not reach services"
    assert echoed["request_id"] == "req-42" and echoed["if_match"] == '"5.1"'
    assert response.headers["X-Request-ID"] == "req-42"
    assert response.headers["ETag"] == '"1.1"' and response.headers["Location"] == "/api/v1/customers/1"


def test_each_call_signs_its_own_request_id_into_the_identity(client, auth):
    """The identity token is reused between calls, but the identity the services verify names this call's
    id: bound to the token by the gateway's HMAC, so a sender cannot name another."""
    tokens = set()
    for request_id in ("first-call", "second-call", "third-call"):
        echoed = client.get("/api/v1/customers", headers=auth | {"X-Request-ID": request_id}).json
        assert echoed["request_id"] == request_id and echoed["identity_request_id"] == request_id
        tokens.add(echoed["identity_token"])
    generated = client.get("/api/v1/customers", headers=auth)
    assert generated.json["identity_request_id"] == generated.headers["X-Request-ID"]
    assert len(tokens) == 1, "one token per caller and access epoch, signed once"


def test_a_reused_identity_token_is_renewed_and_re_signed_when_access_changes(client, auth, app, db):
    from vigil_gateway.identity_cache import bump

    first = client.get("/api/v1/customers", headers=auth).json["identity_token"]
    assert client.get("/api/v1/customers", headers=auth).json["identity_token"] == first
    with db.transaction() as session:
        bump(session)
    assert client.get("/api/v1/customers", headers=auth).json["identity_token"] != first


def test_problem_json_from_a_service_passes_through(client, auth):
    response = client.get("/api/v1/customers?fail=conflict", headers=auth)
    assert is_problem(response, 409)["detail"] == "taken"


def test_unreachable_service_is_503_problem(client, auth):
    problem = is_problem(client.get("/api/v1/properties/1", headers=auth), 503)
    assert "property" in problem["detail"]


def test_unknown_route_is_404_problem(client, auth):
    is_problem(client.get("/api/v1/nowhere", headers=auth), 404)


def test_oversized_body_is_413(client, auth, app):
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    is_problem(client.post("/api/v1/customers", data=b"x" * size, content_type="application/json", headers=auth), 413)


def test_routing_table():
    assert service_for("/api/v1/customers") == "customer"
    assert service_for("/api/v1/customers/3") == "customer"
    assert service_for("/api/v1/customers/3/properties") == "property"
    assert service_for("/api/v1/properties/9") == "property"
    assert service_for("/api/v1/customers/3/billing") == "billing"
    assert service_for("/api/v1/customers/3/invoices") == "billing"
    assert service_for("/api/v1/billing/settings") == "billing"
    assert service_for("/api/v1/rates") == "billing"
    assert service_for("/api/v1/invoices/4/void") == "billing"
    assert service_for("/api/v1/customersx") is None
    assert service_for("/api/v1/customers/3/credit-checks") == "credit"
    assert service_for("/api/v1/customers/3/credit-checks/manual") == "credit"
    assert service_for("/api/v1/customers/3/precheck") == "credit"
    assert service_for("/api/v1/credit-checks/5/apply") == "credit"
    assert service_for("/api/v1/credit-settings") == "credit"
    assert service_for("/api/v1/internal/customers/3/credit-subject") is None  # services only
    assert service_for("/api/v1/ratesx") is None


def test_merged_openapi_document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/auth/token" in doc["paths"] and "/api/v1/customers" in doc["paths"]
    operation = doc["paths"]["/api/v1/customers"]["get"]
    assert set(operation["responses"]) >= {"200", "401", "503"} and operation["x-vigil-service"] == "customer"
    assert doc["x-vigil-unavailable-services"] == ["billing", "credit", "property"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert client.get("/api/v1/docs").status_code == 200


def test_health_and_readiness(client):
    assert client.get("/healthz").json["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": {"status": "ok"}}  # broker: the worker's


def test_create_admin_is_idempotent_and_resettable(db):
    with db.transaction() as session:
        first = ensure_admin(session, TEST_PASSWORDS, "boss", None)
    assert first.created and first.password
    with db.transaction() as session:
        again = ensure_admin(session, TEST_PASSWORDS, "boss", None)
    assert not again.created and again.password is None
    with db.transaction() as session:
        reset = ensure_admin(session, TEST_PASSWORDS, "boss", "new-password-123", reset=True)
    assert reset.password == "new-password-123"


def test_ops_routes_go_to_their_service():
    for name in ("customer", "property", "billing", "credit"):
        assert service_for(f"/api/v1/ops/{name}/outbox") == name
        assert service_for(f"/api/v1/ops/{name}/dead-letters/00000000-0000-0000-0000-000000000000/retry") == name
    assert service_for("/api/v1/ops/gateway/outbox") is None
