"""Asks the customer service about a customer, for when the replica has not heard of it yet.

The ``customer.created`` event can trail the customer's creation by a moment; a client that creates
a customer and then at once an invoice for it must not get a 422 for that. The answer also carries
the customer's office location (which decides who may see its billing), kind, parent and archive state.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import urllib3
from flask import g

from vigil_shared.config import service_url
from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.identity import IDENTITY_HEADER, service_identity, sign_identity
from vigil_shared.runtime import current_runtime
from vigil_shared.web import REQUEST_ID_HEADER

log = logging.getLogger("vigil.billing.customer_client")

TIMEOUT_SECONDS = 3.0
_http = urllib3.PoolManager(maxsize=8, timeout=urllib3.Timeout(total=TIMEOUT_SECONDS), retries=False)


@dataclass(frozen=True)
class CustomerFacts:
    """What the billing service needs to know about a customer."""

    customer_id: int
    location_id: int | None
    kind: str | None = None
    parent_id: int | None = None
    archived: bool = False


def _unavailable() -> Problem:
    return Problem(
        503,
        "The customer service could not be asked about this customer. Try again shortly.",
        type=UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def _id_of(payload, name: str) -> int | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _facts(customer_id: int, payload) -> CustomerFacts:
    record = payload if isinstance(payload, dict) else {}
    kind = record.get("kind") if record.get("kind") in ("customer", "lead") else None
    return CustomerFacts(
        customer_id,
        _id_of(record, "location_id"),
        kind=kind,
        parent_id=_id_of(record, "parent_customer_id"),
        archived=record.get("archived_at") is not None,
    )


def lookup_customer(customer_id: int) -> CustomerFacts | None:
    """The customer's facts for 200, None for 404; 503 problem when the customer service cannot answer."""
    settings = current_runtime().settings
    request_id = g.get("request_id")
    token = sign_identity(
        # the parent (``parent_customer_id``) is in the record's sale section: without its view right the
        # answer would leave it out, and a sub-customer billing confirms at once would bill itself
        service_identity(
            "billing", {"customers.view", "leads.view", "customers.sale_info.view"}, request_id=request_id
        ),
        settings.internal_secret,
        settings.identity_token_ttl,
    )
    headers = {IDENTITY_HEADER: token}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    url = f"{service_url('customer')}/api/v1/customers/{customer_id}"
    try:
        response = _http.request("GET", url, headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        log.warning("customer service unreachable", extra={"request_id": request_id, "error": type(exc).__name__})
        raise _unavailable() from None
    if response.status == 200:
        try:
            payload = json.loads(response.data)
        except ValueError:
            payload = None
        return _facts(customer_id, payload)
    if response.status == 404:
        return None
    log.warning("customer service answered unexpectedly", extra={"request_id": request_id, "status": response.status})
    raise _unavailable()
