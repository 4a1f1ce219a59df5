"""Incoming messages from central stations: signature, timestamp window, replayed ids, rate limit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import WebhookVerificationError

from vigil_shared.crypto import FieldCipher
from vigil_shared.errors import UNAUTHENTICATED, Problem

from . import webhooks
from .models import Integration

TOLERANCE_SECONDS = 300
RATE_LIMITED = "urn:vigil:problem:rate-limited"


class RateLimiter:
    """Messages per integration per minute, in this gateway process (a fixed one-minute window)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, tuple[int, int]] = {}

    def check(self, integration_id: int, per_minute: int) -> None:
        now = time.time()
        minute = int(now // 60)
        with self._lock:
            window, count = self._windows.get(integration_id, (minute, 0))
            if window != minute:
                window, count = minute, 0
            if count >= per_minute:
                retry = max(1, int(60 - now % 60))
                raise Problem(
                    429,
                    f"This integration may send {per_minute} messages a minute.",
                    type=RATE_LIMITED,
                    headers={"Retry-After": str(retry)},
                )
            self._windows[integration_id] = (window, count + 1)


def refused(detail: str) -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


def verify(integration: Integration, cipher: FieldCipher, body: bytes, headers: dict[str, str]) -> str:
    """The message id, once a current signature matches and the timestamp is within 5 minutes (401 otherwise)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id", "")
    if not message_id or len(message_id) > 100 or not lowered.get("webhook-signature"):
        raise refused("Sign the message: webhook-id, webhook-timestamp and webhook-signature are required.")
    try:
        sent = int(lowered.get("webhook-timestamp", ""))
    except ValueError:
        raise refused("webhook-timestamp must be Unix seconds.") from None
    if abs(datetime.now(UTC).timestamp() - sent) > TOLERANCE_SECONDS:
        raise refused("webhook-timestamp is outside the 5-minute window.")
    for secret in webhooks.signing_secrets(integration, cipher, datetime.now(UTC)):
        try:
            webhooks.verify(secret, body, lowered)
            return message_id
        except WebhookVerificationError:
            continue
    raise refused("The signature does not match.")
