"""Calls from gateway code to the services, on behalf of the current caller.

Aggregates (a customer's summary, the technician lookup) ask several services and combine the
answers; they use :func:`call_service` so each call carries the caller's own signed identity and
request id, over the same pooled connections the proxy uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g

from vigil_shared.errors import Problem
from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER, Identity, sign_identity
from vigil_shared.web import REQUEST_ID_HEADER

PROBLEM_EXTRAS = ("permission",)  # what a service's problem says beyond RFC 9457 that callers may read
PROBLEM_HEADERS = ("Retry-After",)


class ServiceUnavailable(Exception):
    def __init__(self, service: str):
        super().__init__(f"the {service} service is unavailable")
        self.service = service


@dataclass
class Reply:
    status: int
    body: dict | list | None
    headers: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def refusal(reply: Reply) -> Problem:
    """A service's refusal (403, 404, 429…), re-issued as the gateway's own problem (its path is internal)."""
    body = reply.body if isinstance(reply.body, dict) else {}
    headers = {name: reply.headers[name] for name in PROBLEM_HEADERS if name in reply.headers}
    return problem_of(reply, headers=headers, **{key: body[key] for key in PROBLEM_EXTRAS if key in body})


def problem_of(reply: Reply, **members: Any) -> Problem:
    """The problem a service answered (its type, title, detail and errors), with ``members`` added."""
    body = reply.body if isinstance(reply.body, dict) else {}
    return Problem(
        reply.status,
        body.get("detail"),
        title=body.get("title"),
        type=body.get("type", "about:blank"),
        errors=body.get("errors"),
        **members,
    )


def call_service(
    service: str,
    method: str,
    path: str,
    *,
    json_body=None,
    params: dict | None = None,
    identity: Identity | None = None,
    signed: tuple[str, str] | None = None,
) -> Reply:
    """One request to a service; ``ServiceUnavailable`` when it cannot be reached.

    As whom: ``identity`` signed for this call, or ``signed`` (a reused token and this call's binding
    to it, see :func:`vigil_shared.identity.request_binding`), or else the caller's own token."""
    from urllib.parse import urlencode

    from urllib3.exceptions import HTTPError as Urllib3Error

    settings = current_app.extensions["vigil_gateway_settings"]
    pool = current_app.extensions["vigil_gateway_pool"]
    headers = {REQUEST_ID_HEADER: g.get("request_id", ""), "Accept": "application/json"}
    if signed is not None:
        headers[IDENTITY_HEADER], headers[BINDING_HEADER] = signed
    elif identity is not None:
        headers[IDENTITY_HEADER] = sign_identity(
            identity, settings.base.internal_secret, settings.base.identity_token_ttl
        )
    else:  # the caller's own (reused) token, with this call's request id bound to it
        headers[IDENTITY_HEADER], headers[BINDING_HEADER] = g.identity_token, g.identity_binding
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    target = path + (f"?{urlencode(params, doseq=True)}" if params else "")
    try:
        response = pool.send(method, settings.service_urls[service], target, body=body, headers=headers)
    except Urllib3Error:
        raise ServiceUnavailable(service) from None
    if response.status >= 500:
        raise ServiceUnavailable(service)
    try:
        payload = json.loads(response.data) if response.data else None
    except ValueError:
        payload = None
    return Reply(response.status, payload, dict(response.headers))
