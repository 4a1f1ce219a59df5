"""HS256 JSON Web Tokens (RFC 7519) with the standard library: the one kind Vigil signs and accepts.

PyJWT did this, but importing it loads cryptography's asymmetric back ends (RSA, EC, EdDSA), which
HS256 never uses: about 20 MB resident in every process that checked or signed a token (issue 10:
the gateway's worker, web workers and services' web workers went over 80 MB once they had worked).
The rules are PyJWT's for what Vigil asks of it (``shared/tests/test_hs256.py`` holds both to the
same verdicts and bytes): the header must name HS256 (never the algorithm a token would choose), the
signature is compared in constant time before any claim is trusted, the ``require``d claims must be
present, ``iat``/``nbf``/``exp`` are integers checked with the leeway, ``iss`` and ``aud`` must match.
Stricter than PyJWT only in what no token Vigil made carries: segments outside the base64url alphabet
and a ``crit`` header are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

HEADER = b'{"alg":"HS256","typ":"JWT"}'  # as PyJWT writes it (its keys sorted)
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")
_now = time.time  # the clock (tests move it)


class InvalidToken(Exception):
    """The token is malformed, not signed with the key, or its claims do not hold."""


def _encode_segment(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _decode_segment(segment: bytes) -> bytes:
    if not _SEGMENT.fullmatch(segment):  # "$" would let a trailing newline through
        raise InvalidToken("a segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("a segment is not base64url") from exc


def _signature(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def encode(claims: Mapping[str, Any], secret: str) -> str:
    """The claims signed with ``secret``: the bytes ``jwt.encode(claims, secret, algorithm="HS256")`` makes."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    signing_input = _encode_segment(HEADER) + b"." + _encode_segment(payload)
    return (signing_input + b"." + _encode_segment(_signature(secret.encode(), signing_input))).decode()


def _integer(claims: dict[str, Any], name: str) -> int:
    try:
        return int(claims[name])
    except (ValueError, TypeError, OverflowError):
        raise InvalidToken(f"{name} must be an integer") from None


def decode(
    token: str, secret: str, *, audience: str, issuer: str, require: tuple[str, ...] = (), leeway: float = 0
) -> dict[str, Any]:
    """The claims of a token signed with ``secret``; :class:`InvalidToken` otherwise (see the module)."""
    if not isinstance(token, str):
        raise InvalidToken("the token is not a string")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken("the token is not base64url") from None
    parts = raw.split(b".")
    if len(parts) != 3:
        raise InvalidToken("the token does not have three segments")
    header_segment, payload_segment, signature_segment = parts
    try:
        header = json.loads(_decode_segment(header_segment))
    except (ValueError, RecursionError):  # read before the signature: a nested header must not become a 500
        raise InvalidToken("the header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
        raise InvalidToken("the header does not name HS256")
    signature = _decode_segment(signature_segment)
    expected = _signature(secret.encode(), header_segment + b"." + payload_segment)
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("the signature does not match")
    try:
        claims = json.loads(_decode_segment(payload_segment))
    except (ValueError, RecursionError):
        raise InvalidToken("the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise InvalidToken("the payload is not a JSON object")
    for name in require:
        if claims.get(name) is None:
            raise InvalidToken(f"the token has no {name} claim")
    now = _now()
    if "iat" in claims and _integer(claims, "iat") > now + leeway:
        raise InvalidToken("the token is not yet valid (iat)")
    if "nbf" in claims and _integer(claims, "nbf") > now + leeway:
        raise InvalidToken("the token is not yet valid (nbf)")
    if "exp" in claims and _integer(claims, "exp") <= now - leeway:
        raise InvalidToken("the token has expired")
    if not isinstance(claims.get("iss"), str) or claims["iss"] != issuer:
        raise InvalidToken("the issuer does not match")
    audiences = claims.get("aud")
    if not audiences:
        raise InvalidToken("the token has no audience")
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if not isinstance(audiences, list) or any(not isinstance(a, str) for a in audiences) or audience not in audiences:
        raise InvalidToken("the audience does not match")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise InvalidToken("the subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise InvalidToken("the token id must be a string")
    return claims
