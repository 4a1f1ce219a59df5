"""Asks the customer service, over the signed internal call (:mod:`vigil_shared.customer_replica`), about a customer.

- :func:`customer_facts`: whether the customer exists, in which office location (which decides
  who may run, see and apply its credit checks) and whether it is archived (read-only), at request time.
- :func:`credit_subject`: the name, address, SSN and birthdate a pull needs, at pull time only. The
  customer service audits each such read; the values live in memory for the pull and are never
  stored, logged or put in a message here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vigil_shared.config import Settings
from vigil_shared.customer_replica import CREDIT_SUBJECT_PERMISSIONS, VIEW_PERMISSIONS, ask_customer_service, id_of
from vigil_shared.customer_replica import CustomerGone as CustomerGone
from vigil_shared.customer_replica import CustomerUnavailable as CustomerUnavailable
from vigil_shared.customer_replica import unavailable as unavailable

TIMEOUT_SECONDS = 5.0
SUBJECT_PERMISSIONS = frozenset(CREDIT_SUBJECT_PERMISSIONS)


def _get(settings: Settings, path: str, permissions: frozenset[str], request_id: str | None) -> dict[str, Any]:
    payload = ask_customer_service("credit", settings, path, permissions, request_id, timeout=TIMEOUT_SECONDS)
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
    payload = _get(settings, f"/api/v1/customers/{customer_id}", VIEW_PERMISSIONS, request_id)
    return CustomerFacts(id_of(payload, "location_id"), payload.get("archived_at") is not None)


def credit_subject(settings: Settings, customer_id: int, request_id: str | None) -> dict[str, Any]:
    """What a bureau needs about the subject, SSN and birthdate included (the customer service audits the read)."""
    return _get(settings, f"/api/v1/internal/customers/{customer_id}/credit-subject", SUBJECT_PERMISSIONS, request_id)
