"""Asks the customer service, over the signed internal call, about a customer.

- :func:`customer_facts`: whether the customer exists, in which office location (which decides
  who may run, see and apply its credit checks) and whether it is archived (read-only), at request time.
- :func:`credit_subject`: the name, address, SSN and birthdate a pull needs, at pull time only. The
  customer service audits each such read; the values live in memory for the pull and are never
  stored, logged or put in a message here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import urllib3

from vigil_shared.config import Settings, service_url
from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.identity import IDENTITY_HEADER, service_identity, sign_identity
from vigil_shared.web import REQUEST_ID_HEADER

log = logging.getLogger("vigil.credit.customer_client")

TIMEOUT_SECONDS = 5.0
_http = urllib3.PoolManager(maxsize=16, timeout=urllib3.Timeout(total=TIMEOUT_SECONDS), retries=False)
SUBJECT_PERMISSIONS = frozenset({"confidential.ssn.view", "confidential.birthdate.view"})


class CustomerUnavailable(Exception):
    """The customer service could not be asked."""


class CustomerGone(Exception):
    """The customer does not exist (any more)."""


def unavailable() -> Problem:
    return Problem(
        503,
        "The customer service could not be asked about this customer. Try again shortly.",
        type=UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def _get(settings: Settings, path: str, permissions: frozenset[str], request_id: str | None) -> dict[str, Any]:
    token = sign_identity(
        service_identity("credit", permissions, request_id=request_id),
        settings.internal_secret,
        settings.identity_token_ttl,
    )
    headers = {IDENTITY_HEADER: token, "Accept": "application/json"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    try:
        response = _http.request("GET", f"{service_url('customer')}{path}", headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        log.warning("customer service unreachable", extra={"request_id": request_id, "error": type(exc).__name__})
        raise CustomerUnavailable() from None
    if response.status == 404:
        raise CustomerGone()
    if response.status != 200:
        log.warning(
            "customer service answered unexpectedly", extra={"request_id": request_id, "status": response.status}
        )
        raise CustomerUnavailable()
    try:
        payload = json.loads(response.data)
    except ValueError:
        raise CustomerUnavailable() from None
    if not isinstance(payload, dict):
        raise CustomerUnavailable()
    return payload


@dataclass(frozen=True)
class CustomerFacts:
    location_id: int | None
    archived: bool = False


def customer_facts(settings: Settings, customer_id: int, request_id: str | None) -> CustomerFacts:
    """The customer's office location and archive state; :class:`CustomerGone` for 404,
    :class:`CustomerUnavailable` otherwise."""
    payload = _get(
        settings, f"/api/v1/customers/{customer_id}", frozenset({"customers.view", "leads.view"}), request_id
    )
    value = payload.get("location_id")
    location_id = value if isinstance(value, int) and not isinstance(value, bool) else None
    return CustomerFacts(location_id, payload.get("archived_at") is not None)


def credit_subject(settings: Settings, customer_id: int, request_id: str | None) -> dict[str, Any]:
    """What a bureau needs about the subject, SSN and birthdate included (the customer service audits the read)."""
    return _get(settings, f"/api/v1/internal/customers/{customer_id}/credit-subject", SUBJECT_PERMISSIONS, request_id)
