"""The ADT PreCheck behind a small interface: ``precheck(customer, key) -> PreCheckAnswer``.

:class:`HttpAdt` speaks to the sandbox ADT endpoint (``POST /adt/v1/prechecks``, in the sandbox
bureau process) by default; production points ``VIGIL_BUREAU_URL``'s ADT path at the real one. The
same timeouts, retries with backoff and idempotency key as the bureau (:class:`HttpBureau`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil_shared.masking import scrub

from .bureau import BureauFailure, HttpBureau, answered_text

RESULTS = ("approved", "declined", "manual_review")


@dataclass(frozen=True)
class PreCheckAnswer:
    status: str  # approved, declined or manual_review
    reference: str | None
    reasons: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


class Adt(Protocol):
    def precheck(self, customer: dict[str, Any], key: str) -> PreCheckAnswer: ...


@dataclass
class HttpAdt:
    http: HttpBureau

    @classmethod
    def from_env(cls) -> HttpAdt:
        return cls(HttpBureau.from_env())

    def precheck(self, customer: dict[str, Any], key: str) -> PreCheckAnswer:
        answer = self.http.post("/adt/v1/prechecks", {"customer": customer}, key, "ADT PreCheck")
        status = answer.get("result")
        if status not in RESULTS:
            raise BureauFailure("ADT PreCheck's answer could not be read.")
        reasons = answer.get("reasons")
        if reasons is None:
            reasons = []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise BureauFailure("ADT PreCheck's answer could not be read: its reasons are malformed.")
        return PreCheckAnswer(
            status=str(status),
            reference=answered_text(answer, "reference", 100, "ADT PreCheck"),
            reasons=[(scrub(r) or "")[:200] for r in reasons][:20],
            raw=answer,
        )
