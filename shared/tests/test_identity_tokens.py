"""The gateway identity token is verified strictly: only the gateway's HS256 header, a valid signature,
the times, issuer and audience (vigil_shared.hs256, held to PyJWT's verdicts by test_hs256.py)."""

import base64
import dataclasses
import json
import time

import jwt
import pytest

from vigil_shared.identity import AUDIENCE, ISSUER, Identity, InvalidIdentity, sign_identity, verify_identity

SECRET = "k" * 40
IDENTITY = Identity(subject="3", username="sam", locations={1: frozenset({"customers.view"})}, request_id="r1")


def claims(**changes) -> dict:
    now = int(time.time())
    base = IDENTITY.to_claims() | {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 60}
    return {k: v for k, v in (base | changes).items() if v is not ...}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_the_token_is_a_standard_hs256_jwt_both_ways():
    token = sign_identity(IDENTITY, SECRET)
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert Identity.from_claims(decoded) == IDENTITY
    assert verify_identity(jwt.encode(claims(), SECRET, algorithm="HS256"), SECRET) == IDENTITY


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS512", "typ": "JWT"},
        {"alg": "HS256", "typ": "JWT", "kid": "other"},
        {"alg": "HS256"},
    ],
)
def test_only_the_gateway_header_is_accepted(header):
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    forged = f"{b64(header)}.{token.split('.')[1]}.{token.split('.')[2]}"
    unsigned = f"{b64(header)}.{token.split('.')[1]}."
    for candidate in (forged, unsigned):
        with pytest.raises(InvalidIdentity):
            verify_identity(candidate, SECRET)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "ü.ü.ü", None, 42])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(InvalidIdentity):
        verify_identity(token, SECRET)


def test_a_changed_payload_or_signature_is_refused():
    header, payload, signature = sign_identity(IDENTITY, SECRET).split(".")
    elevated = b64(claims(perms=["users.manage"]))
    for candidate in (
        f"{header}.{elevated}.{signature}",
        f"{header}.{payload}.{signature[:-2]}AA",
        f"{header}.{payload}.ü{signature[1:]}",
        f"{header}.{payload}.",
    ):
        with pytest.raises(InvalidIdentity):
            verify_identity(candidate, SECRET)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(time.time()) - 6},
        {"exp": ...},
        {"iat": ...},
        {"sub": ...},
        {"iss": ...},
        {"aud": ...},
        {"iss": "someone-else"},
        {"aud": "another-audience"},
        {"aud": ["another-audience"]},
        {"nbf": int(time.time()) + 60},
        {"iat": int(time.time()) + 60},
        {"exp": "later"},
        {"exp": True},
        {"exp": float("inf")},
        {"iat": float("nan")},
    ],
)
def test_times_issuer_audience_and_required_claims_are_checked(changes):
    with pytest.raises(InvalidIdentity):
        verify_identity(jwt.encode(claims(**changes), SECRET, algorithm="HS256"), SECRET)


def test_the_leeway_tolerates_a_few_seconds_of_clock_skew():
    now = int(time.time())
    skewed = jwt.encode(claims(exp=now - 3, iat=now + 3, nbf=now + 3), SECRET, algorithm="HS256")
    assert verify_identity(skewed, SECRET) == IDENTITY
    assert verify_identity(jwt.encode(claims(aud=[AUDIENCE, "other"]), SECRET, algorithm="HS256"), SECRET) == IDENTITY


def test_a_token_seen_before_is_refused_once_expired(monkeypatch):
    """Verified tokens are remembered (the gateway reuses one between calls) only until they expire."""
    from vigil_shared import identity as module

    token = jwt.encode(claims(exp=int(time.time()) + 2), SECRET, algorithm="HS256")
    assert verify_identity(token, SECRET) == IDENTITY
    assert verify_identity(token, SECRET) == IDENTITY  # from memory

    from vigil_shared import hs256

    monkeypatch.setattr(hs256, "_now", lambda: time.time() + 60)  # the token check's clock
    monkeypatch.setattr(module, "_clock", lambda: time.time() + 60)  # the memory's
    with pytest.raises(InvalidIdentity):
        verify_identity(token, SECRET)
    monkeypatch.undo()
    with pytest.raises(InvalidIdentity):  # the same bytes under another secret: checked, not remembered
        verify_identity(token, "x" * 40)


def test_a_bound_request_id_is_the_gateways_or_the_token_is_refused():
    from vigil_shared.identity import request_binding

    token = sign_identity(dataclasses.replace(IDENTITY, request_id=None), SECRET)
    bound = request_binding(token, "call-1", SECRET)
    assert verify_identity(token, SECRET, request_id="call-1", binding=bound).request_id == "call-1"
    assert verify_identity(token, SECRET).request_id is None  # no binding: the token's own (none)
    for request_id, binding in (
        ("call-2", bound),  # another call's id
        ("call-1", request_binding(token, "call-1", "y" * 40)),  # bound with another secret
        ("call-1", request_binding(sign_identity(IDENTITY, SECRET), "call-1", SECRET)),  # another token's
        ("call-1", ""),
        ("call-1", "ü" * 64),
        (None, bound),
    ):
        with pytest.raises(InvalidIdentity):
            verify_identity(token, SECRET, request_id=request_id, binding=binding)


def test_an_identity_for_one_call_is_the_same_as_dataclasses_replace():
    identity = Identity(
        "user:7", "ana", permissions=frozenset({"users.view"}), locations={3: frozenset({"properties.view"})}
    )
    for request_id in ("req-1", None):
        copy = identity.with_request_id(request_id)
        assert copy == dataclasses.replace(identity, request_id=request_id)
        assert type(copy) is Identity and copy is not identity
    assert identity.request_id is None  # the cached one is left as it was
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.with_request_id("req-2").request_id = "other"  # type: ignore[misc]
