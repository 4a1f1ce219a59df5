"""The technician lookup: a property identified on site by account number and PIN, with its emergency contacts.

The property service checks the PIN (constant time, 5 wrong ones lock the account for 15 minutes,
attempts rate-limited per client address, ``tech_portal.use`` at the property's location) and
answers the site. :func:`look_up_site` asks it, then adds the customer's emergency contacts from the
customer service (its internal ``emergency-contacts`` read: the contacts the on-site answer shows,
in call order, in one query); when that service is down the answer is still given, marked ``partial``. Nothing
else of the customer is asked for. A refusal of the property service is re-issued as the gateway's
own problem (its ``Retry-After`` kept); the property service down is a 503.

Nothing here reads the request: the view passes the parsed body and renders what comes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from flask import current_app, g

from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.identity import request_binding, service_identity, sign_claims
from vigil_shared.web import CONFIDENTIAL_READS_HEADER

from .upstream import ServiceUnavailable, call_service, refusal

VERIFY_PATH = "/api/v1/tech/verify"
CONTACT_FIELDS = ("id", "name", "relation", "role", "phones", "email", "has_key", "call_priority", "is_primary")


@dataclass(frozen=True)
class SiteFound:
    """The property service's answer, the emergency contacts (None: the customer service could not say),
    and the confidential reads the property service reported (audited by the gateway on the way out)."""

    site: dict[str, Any]
    contacts: list[dict[str, Any]] | None
    confidential_reads: str | None = None

    @property
    def property_found(self) -> dict[str, Any]:
        """The property found (its ``id`` and ``customer_id`` go into the audit entry)."""
        return cast(dict[str, Any], self.site["property"])

    @property
    def partial(self) -> bool:
        return self.contacts is None

    def body(self) -> dict[str, Any]:
        return self.site | {
            "emergency_contacts": self.contacts,
            "partial": self.partial,
            "unavailable": ["customer"] if self.partial else [],
        }

    def headers(self) -> dict[str, str]:
        return {CONFIDENTIAL_READS_HEADER: self.confidential_reads} if self.confidential_reads else {}


class _ContactsToken:
    """The gateway's ``contacts.view`` service token, signed once and reused for half its lifetime
    (each call's request id bound to it by an HMAC), as the callers' own tokens are: signing one per
    lookup (PyJWT) cost the gateway, and verifying it the customer service, a few percent each."""

    def __init__(self) -> None:
        self._held: tuple[str, int, str, float] | None = None  # secret, ttl, token, renew at

    def signed(self, request_id: str | None) -> tuple[str, str]:
        base = current_app.extensions["vigil_gateway_settings"].base
        secret, ttl, held, now = base.internal_secret, base.identity_token_ttl, self._held, time.monotonic()
        if held is None or held[:2] != (secret, ttl) or now >= held[3]:
            claims = service_identity("gateway", {"contacts.view"}).to_claims() | {"rid": None}
            held = self._held = (secret, ttl, sign_claims(claims, secret, ttl), now + ttl / 2)
        return held[2], request_binding(held[2], request_id, secret)


_contacts_token = _ContactsToken()


def emergency_contacts(customer_id: int) -> list[dict[str, Any]] | None:
    """The customer's emergency contacts, in calling order; None when the customer service cannot say."""
    try:
        reply = call_service(
            "customer",
            "GET",
            f"/api/v1/internal/customers/{customer_id}/emergency-contacts",
            signed=_contacts_token.signed(g.get("request_id")),
        )
    except ServiceUnavailable:
        return None
    if reply.status != 200:
        return None
    items = reply.body.get("items") if isinstance(reply.body, dict) else reply.body
    if not isinstance(items, list):
        return None
    contacts = [{key: item[key] for key in CONTACT_FIELDS if key in item} for item in items if isinstance(item, dict)]
    return sorted(contacts, key=lambda c: (c.get("call_priority") is None, c.get("call_priority") or 0))


def look_up_site(data: dict[str, Any]) -> SiteFound:
    """The site behind ``data`` (``account_number``, ``pin``), as the property service answers the caller."""
    try:
        reply = call_service("property", "POST", VERIFY_PATH, json_body=data)
    except ServiceUnavailable:
        raise Problem(
            503,
            "The property service is unavailable. Try again shortly.",
            type=UNAVAILABLE,
            headers={"Retry-After": "5"},
        ) from None
    if not reply.ok:
        raise refusal(reply)
    site = cast(dict[str, Any], reply.body)  # the property service's verify answer: an object
    return SiteFound(
        site,
        emergency_contacts(site["property"]["customer_id"]),
        reply.headers.get(CONFIDENTIAL_READS_HEADER),
    )
