"""vigil_shared.hs256 against PyJWT, which it replaced (PyJWT loads about 20 MB of cryptography that HS256
never uses): the same token bytes when signing, the same verdict on every token when checking."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from vigil_shared import hs256

SECRET = "s" * 40
AUD, ISS = "vigil-services", "vigil-gateway"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: dict | bytes, payload: dict | bytes, secret: str = SECRET) -> str:
    """A token with any header and payload, signed with ``secret`` (what a forger with the key, or PyJWT, makes)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(head)}.{b64(body)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"sub": "3", "name": "sam", "iss": ISS, "aud": AUD, "iat": now, "nbf": now - 5, "exp": now + 60, "jti": "j"}
    return {k: v for k, v in (base | changes).items() if v is not ...}


def test_signing_makes_the_bytes_pyjwt_makes():
    for payload in (claims(), claims(aud=[AUD, "x"], locs={"1": 0}, sets=[["a", "b"]], rid=None), {"é": "ü\u2028"}):
        assert hs256.encode(payload, SECRET) == jwt.encode(payload, SECRET, algorithm="HS256")


def pyjwt_accepts(token, require=("exp", "iat", "sub")) -> dict | None:
    try:
        return jwt.decode(
            token, SECRET, algorithms=["HS256"], audience=AUD, issuer=ISS, options={"require": list(require)}, leeway=5
        )
    except jwt.PyJWTError:
        return None


def ours_accepts(token, require=("exp", "iat", "sub")) -> dict | None:
    try:
        return hs256.decode(token, SECRET, audience=AUD, issuer=ISS, require=require, leeway=5)
    except hs256.InvalidToken:
        return None


now = int(time.time())
HS256 = {"alg": "HS256", "typ": "JWT"}
TOKENS = {
    "ours": hs256.encode(claims(), SECRET),
    "pyjwt's": jwt.encode(claims(), SECRET, algorithm="HS256"),
    "header without typ": signed({"alg": "HS256"}, claims()),
    "header with kid": signed({"alg": "HS256", "typ": "JWT", "kid": "k"}, claims()),
    "audience list": signed(HS256, claims(aud=["other", AUD])),
    "skewed within leeway": signed(HS256, claims(exp=now - 3, iat=now + 3, nbf=now + 3)),
    "times as strings": signed(HS256, claims(exp=str(now + 60), iat=str(now))),
    "alg none": signed({"alg": "none", "typ": "JWT"}, claims()),
    "alg HS512": signed({"alg": "HS512", "typ": "JWT"}, claims()),
    "alg missing": signed({"typ": "JWT"}, claims()),
    "header a list": signed(b"[1]", claims()),
    "header not json": signed(b"{", claims()),
    "another key": signed(HS256, claims(), secret="x" * 40),
    "unsigned": signed(HS256, claims()).rsplit(".", 1)[0] + ".",
    "payload a list": signed(HS256, b"[1, 2]"),
    "payload not json": signed(HS256, b"{"),
    "expired": signed(HS256, claims(exp=now - 10)),
    "not yet (nbf)": signed(HS256, claims(nbf=now + 60)),
    "not yet (iat)": signed(HS256, claims(iat=now + 60)),
    "exp a word": signed(HS256, claims(exp="later")),
    "exp true": signed(HS256, claims(exp=True)),
    "exp infinite": signed(HS256, b'{"sub":"3","iss":"vigil-gateway","aud":"vigil-services","iat":1,"exp":Infinity}'),
    "iat nan": signed(HS256, b'{"sub":"3","iss":"vigil-gateway","aud":"vigil-services","iat":NaN,"exp":9999999999}'),
    "exp null": signed(HS256, claims(exp=None)),
    "no exp": signed(HS256, claims(exp=...)),
    "no sub": signed(HS256, claims(sub=...)),
    "sub a number": signed(HS256, claims(sub=3)),
    "jti a number": signed(HS256, claims(jti=3)),
    "other issuer": signed(HS256, claims(iss="someone")),
    "no issuer": signed(HS256, claims(iss=...)),
    "issuer a list": signed(HS256, claims(iss=[ISS])),
    "other audience": signed(HS256, claims(aud="someone")),
    "no audience": signed(HS256, claims(aud=...)),
    "empty audience": signed(HS256, claims(aud=[])),
    "audience of numbers": signed(HS256, claims(aud=[AUD, 1])),
    "audience an object": signed(HS256, claims(aud={AUD: 1})),
    "two segments": "a.b",
    "four segments": "a.b.c.d",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_every_token_gets_pyjwts_verdict(name):
    token = TOKENS[name]
    assert ours_accepts(token) == pyjwt_accepts(token)


@pytest.mark.parametrize("require", [("exp", "iat", "sub", "jti", "sid"), ("exp", "iat", "sub", "aud", "iss")])
def test_required_claims_get_pyjwts_verdict(require):
    for token in (signed(HS256, claims(sid="s")), signed(HS256, claims()), signed(HS256, claims(sid=None))):
        assert ours_accepts(token, require) == pyjwt_accepts(token, require)


@pytest.mark.parametrize("token", ["ü.ü.ü", "a b.c.d", "e30.e30.%%%", None, 42, b"a.b.c"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(hs256.InvalidToken):
        hs256.decode(token, SECRET, audience=AUD, issuer=ISS)


def test_a_signature_segment_with_a_trailing_newline_is_refused():
    token = signed(HS256, claims())
    assert ours_accepts(token) is not None
    assert ours_accepts(token + "\n") is None


@pytest.mark.parametrize("part", ["header", "payload"])
def test_a_deeply_nested_segment_is_refused_not_raised(part):
    """The header is parsed before the signature is checked: anyone can send one nested past the parser's depth."""
    nested = b"[" * 5000 + b"]" * 5000
    token = signed(nested, claims()) if part == "header" else signed(HS256, nested)
    with pytest.raises(hs256.InvalidToken):
        hs256.decode(token, SECRET, audience=AUD, issuer=ISS)


def test_a_crit_header_is_refused_although_signed():
    token = signed({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}, claims())
    assert ours_accepts(token) is None


def test_processes_that_check_or_sign_tokens_load_neither_pyjwt_nor_cryptography():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vigil_shared.identity import Identity, sign_identity, verify_identity\n"
        "token = sign_identity(Identity(subject='1', username='a'), 's' * 40)\n"
        "assert verify_identity(token, 's' * 40).subject == '1'\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jwt', 'cryptography'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
