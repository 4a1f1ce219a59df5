"""Credit bureaus behind one small interface: ``pull(bureau, subject, options, key) -> BureauAnswer``.

:class:`HttpBureau` speaks the bureau protocol Vigil's sandbox bureau answers (``POST /v1/inquiries``
with an ``Idempotency-Key``); production points ``VIGIL_BUREAU_URL`` at the real gateway. Every
request has a timeout; a timeout, a dropped connection or a 5xx is retried with exponential backoff,
always with the same idempotency key, so a retry is never a second hard inquiry. When the retries are
spent the pull fails with a reason (:class:`BureauFailure`); nothing waits for ever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3

from vigil_shared.config import BUREAU, env_float, env_int
from vigil_shared.masking import scrub

log = logging.getLogger("vigil.credit.bureau")

OUTCOMES = {"hit": "complete", "no_hit": "no_hit", "frozen": "frozen"}
CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class BureauAnswer:
    status: str  # complete, no_hit or frozen
    transaction_id: str | None
    score: int | None = None
    reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the whole answer, stored encrypted


class BureauFailure(Exception):
    """The bureau could not give an answer (refused the request, or stayed down through every retry)."""

    def __init__(self, reason: str):
        reason = scrub(reason) or ""  # the bureau's own words may echo the subject's SSN
        super().__init__(reason)
        self.reason = reason[:500]


class Bureau(Protocol):
    def pull(self, bureau: str, subject: dict[str, Any], options: dict[str, Any], key: str) -> BureauAnswer: ...


@dataclass
class HttpBureau:
    base_url: str
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    # held around each request (not the pauses between retries): the concurrency cap shared by every
    # worker (``slots.SharedSlots.hold``); none by default
    gate: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext

    @classmethod
    def from_env(cls) -> HttpBureau:
        return cls(
            base_url=BUREAU.url(),
            timeout=env_float("VIGIL_BUREAU_TIMEOUT", 10.0),
            retries=env_int("VIGIL_BUREAU_RETRIES", 3),
            backoff=env_float("VIGIL_BUREAU_BACKOFF", 1.0),
        )

    @property
    def longest_request(self) -> float:
        """Seconds one request can take at most (connect and read timeouts): a slot's lease."""
        return min(self.timeout, CONNECT_TIMEOUT) + self.timeout

    def __post_init__(self) -> None:
        self._http = urllib3.PoolManager(maxsize=16, retries=False)

    def pull(self, bureau: str, subject: dict[str, Any], options: dict[str, Any], key: str) -> BureauAnswer:
        body = {"bureau": bureau, "subject": subject, "options": options}
        return _answer(self.post("/v1/inquiries", body, key, "The bureau"))

    def post(self, path: str, body: dict[str, Any], key: str, who: str) -> dict[str, Any]:
        """POSTs ``body`` with ``key``: retried on a timeout, a lost connection or a 5xx with backoff,
        then :class:`BureauFailure` naming what ``who`` did; a 4xx is not retried."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, "Accept": "application/json"}
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                with self.gate():
                    response = self._http.request(
                        "POST",
                        f"{self.base_url}{path}",
                        body=data,
                        headers=headers,
                        timeout=urllib3.Timeout(
                            connect=min(self.timeout, CONNECT_TIMEOUT), read=self.timeout, total=self.longest_request
                        ),
                    )
            except urllib3.exceptions.HTTPError as exc:
                # NewConnectionError is a ConnectTimeoutError to urllib3: test it first
                unreachable = isinstance(exc, urllib3.exceptions.NewConnectionError)
                timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) and not unreachable
                last = "timed out" if timed_out else "could not be reached"
                log.warning("external request failed", extra={"attempt": attempt + 1, "error": type(exc).__name__})
                continue
            answer = _json(response.data)
            if response.status >= 500:
                last = f"answered {response.status}: {answer.get('message') or 'server error'}"
                log.warning(
                    "external system answered an error", extra={"attempt": attempt + 1, "status": response.status}
                )
                continue
            if response.status != 200:
                raise BureauFailure(f"{who} refused the request ({response.status}): {answer.get('message', '')}")
            return answer
        raise BureauFailure(f"{who} is unavailable: it {last} ({self.retries + 1} attempts).")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def answered_text(answer: dict[str, Any], name: str, limit: int, who: str) -> str | None:
    """A text field of an external answer: absent or empty is None; anything but a string of at most
    ``limit`` characters makes the answer unreadable (a failure with a reason, never stored as garbage)."""
    value = answer.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BureauFailure(f"{who}'s answer could not be read: its {name} is malformed.")
    return value


def _answer(answer: dict[str, Any]) -> BureauAnswer:
    status = OUTCOMES.get(str(answer.get("result")))
    if status is None:
        raise BureauFailure("The bureau's answer could not be read.")
    score = answer.get("score")
    if status == "complete" and (not isinstance(score, int) or isinstance(score, bool) or not 300 <= score <= 850):
        raise BureauFailure("The bureau's answer carried no valid score.")
    transaction_id = answered_text(answer, "transaction_id", 100, "The bureau")
    message = answered_text(answer, "message", 10_000, "The bureau")
    return BureauAnswer(
        status=status,
        transaction_id=transaction_id,
        score=score if status == "complete" else None,
        reason=None if status == "complete" else (scrub(message or status) or "")[:500],
        raw=answer,
    )
