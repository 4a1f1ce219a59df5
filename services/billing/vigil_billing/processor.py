"""The payment processor adapter: a small interface, with timeouts, retries and idempotency keys.

Billing talks to a processor only through :class:`Processor`. :class:`HttpProcessor` speaks the API
of Vigil's sandbox processor (``sandboxes/processor``), shaped like the common card processors':
tokens are made by the client, Vigil reads a token's safe facts back (brand, last four, expiry,
holder), charges and refunds it. Every charge and refund carries an idempotency key chosen by
billing (one per payment), so a retry — by this adapter after a timeout, or by a Celery task run
again after a crash — never charges twice. Timeouts are bounded; connection errors and 5xx answers
are retried with backoff (same key), then reported as ``unavailable``. So is a 2xx answer that lacks
what the processor's contract promises (a token without its token or last four, a success without its
charge id, a field of the wrong type): an external system's malformed answer is never kept, and never a
500; the same key asks again later.

Nothing here logs or returns a card number: Vigil never has one.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import urllib3

from vigil_shared.config import PROCESSOR, env
from vigil_shared.masking import scrub

log = logging.getLogger("vigil.billing.processor")

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
ATTEMPTS = 3
BACKOFF = 0.5  # seconds before the second attempt; doubles after


class ProcessorUnavailable(Exception):
    """The processor did not answer (network, timeout, 5xx) after every attempt."""


class ProcessorMalformed(ProcessorUnavailable):
    """The processor answered, but not as its contract says: handled as an outage (nothing kept)."""


def _text(value: Any, limit: int) -> str | None:
    """A string field of at most ``limit`` characters, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _optional(data: dict[str, Any], name: str, check: Any) -> Any:
    """``data[name]`` when absent/null or passing ``check``; else the answer is malformed."""
    value = data.get(name)
    if value is None:
        return None
    if not check(value):
        raise ProcessorMalformed(f"the processor's {name} is malformed")
    return value


def _month(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12


def _year(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1900 <= value <= 9999


@dataclass(frozen=True)
class TokenFacts:
    token: str
    kind: str  # card | ach
    brand: str | None
    last4: str
    exp_month: int | None
    exp_year: int | None
    holder: str | None


@dataclass(frozen=True)
class ChargeResult:
    """``succeeded``, or ``failed`` with the processor's ``failure_code``/message and whether it is soft."""

    status: str
    charge_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    soft_decline: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Processor(Protocol):
    def token_facts(self, token: str) -> TokenFacts | None: ...

    def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult: ...

    def refund(self, charge_id: str, amount: int, idempotency_key: str) -> ChargeResult: ...


class HttpProcessor:
    def __init__(self, base_url: str, api_key: str, *, attempts: int = ATTEMPTS, backoff: float = BACKOFF):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.attempts = attempts
        self.backoff = backoff
        self.http = urllib3.PoolManager(
            maxsize=8, timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT), retries=False
        )

    def single_attempt(self) -> HttpProcessor:
        """This processor making one attempt per call, on the same connection pool."""
        if self.attempts == 1:
            return self
        once = copy.copy(self)
        once.attempts = 1
        return once

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None):
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        payload = json.dumps(body).encode() if body is not None else None
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.http.request(method, f"{self.base_url}{path}", body=payload, headers=headers)
            except urllib3.exceptions.HTTPError as exc:
                log.warning("processor unreachable", extra={"attempt": attempt, "error": type(exc).__name__})
            else:
                if response.status < 500:
                    try:
                        data = json.loads(response.data or b"{}")
                    except ValueError:
                        data = {}
                    return response.status, data if isinstance(data, dict) else {}
                log.warning("processor error", extra={"attempt": attempt, "status": response.status})
            if attempt < self.attempts:
                time.sleep(delay)
                delay *= 2
        raise ProcessorUnavailable(f"{method} {path}")

    def token_facts(self, token: str) -> TokenFacts | None:
        status, data = self._call("GET", f"/v1/tokens/{quote(token, safe='')}")
        if status != 200:
            return None
        return _token_facts(data)

    def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        status, data = self._call(
            "POST", "/v1/charges", {"token": token, "amount": amount, "currency": currency}, idempotency_key
        )
        return _result(status, data, token)

    def refund(self, charge_id: str, amount: int, idempotency_key: str) -> ChargeResult:
        status, data = self._call("POST", "/v1/refunds", {"charge": charge_id, "amount": amount}, idempotency_key)
        return _result(status, data)


def _token_facts(data: dict[str, Any]) -> TokenFacts:
    """A token's facts as billing keeps them; ``ProcessorMalformed`` when the answer is not what they are."""
    token, last4 = _text(data.get("token"), 100), data.get("last4")
    if token is None or not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
        raise ProcessorMalformed("the processor's token answer lacks its token or last four digits")
    kind = data.get("kind") or "card"
    if kind not in ("card", "ach"):
        raise ProcessorMalformed("the processor's token kind is unknown")
    return TokenFacts(
        token=token,
        kind=kind,
        brand=_optional(data, "brand", lambda v: _text(v, 30) is not None),
        last4=last4,
        exp_month=_optional(data, "exp_month", _month),
        exp_year=_optional(data, "exp_year", _year),
        holder=_optional(data, "holder", lambda v: _text(v, 100) is not None),
    )


def _result(status: int, data: dict[str, Any], token: str | None = None) -> ChargeResult:
    if status in (200, 201) and data.get("status") == "succeeded":
        charge_id = _text(data.get("id"), 80)
        if charge_id is None:  # money may have moved: not a refusal, asked again later with the same key
            raise ProcessorMalformed("the processor's success names no charge id")
        return ChargeResult("succeeded", charge_id)
    if status in (200, 201) and data.get("status") != "failed":
        raise ProcessorMalformed("the processor's answer is neither a success nor a refusal")
    found = data.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    code = data.get("failure_code") or error.get("code")
    words = data.get("failure_message") or error.get("message")
    return ChargeResult(
        "failed",
        _text(data.get("id"), 80),
        # the code is the processor's words too: stored, shown, and carried by ``payment.failed`` (the
        # gateway's change feed and webhook payloads), so it is scrubbed like the message
        failure_code=((scrub(code, token) or "") if isinstance(code, str) else f"http_{status}")[:60],
        # the processor's words may echo a card number or the token: stored, and shown to billing viewers
        failure_message=(scrub(words if isinstance(words, str) else "Refused by the processor.", token) or "")[:200],
        soft_decline=data.get("soft_decline") is True,
    )


_configured: Processor | None = None


def processor() -> Processor:
    """The configured processor (``VIGIL_PROCESSOR_URL``/``_API_KEY``); tests replace it with :func:`use`."""
    global _configured
    if _configured is None:
        _configured = HttpProcessor(PROCESSOR.url(), env("VIGIL_PROCESSOR_API_KEY", "sk_test_vigil_sandbox"))
    return _configured


def background_processor() -> Processor:
    """The configured processor as a task or the beat calls it: one attempt per call, no sleep between
    attempts. Their work is tried again later by Celery's retry or the next run, with the same
    idempotency key; sleeping between attempts inside a task held the billing worker's one thread (a
    soak with a processor answering 503 for one card saw the queue back up behind those sleeps)."""
    configured = processor()
    return configured.single_attempt() if isinstance(configured, HttpProcessor) else configured


def use(replacement: Processor | None) -> None:
    global _configured
    _configured = replacement
