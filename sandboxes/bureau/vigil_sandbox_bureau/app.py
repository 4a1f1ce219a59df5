"""The sandbox credit bureau: deterministic answers by test identity, for ``make run`` and the e2e suite.

Test identities (by the last four digits of the subject's SSN, as real bureaus' test files do):

=========  ==========================================================================
``1000``   no hit: the bureau has no file for the subject
``1001``   frozen file: the subject froze their credit
``1002``   slow: answers after ``SLOW_SECONDS`` (a hit)
``1003``   hangs: answers after ``HANG_SECONDS`` (far beyond any client timeout)
``1004``   broken: ``503`` every time
``1005``   flaky: ``500`` on the first request of a key, a hit on the next
other      a hit with score ``300 + (last four digits mod 551)`` (``…0750`` → 499)
=========  ==========================================================================

``POST /v1/inquiries`` needs an ``Idempotency-Key``: a repeated request with the same key is not a
second inquiry, it gets the first one's answer (and waits for it while the first is still running).
The sandbox counts inquiries (``GET /sandbox/inquiries``), so tests can assert there was exactly one,
and, for the bureau and for ADT apart, the requests in flight and the most it ever held at once
(``GET /sandbox/concurrency``): what a concurrency cap on the callers is checked against.
``POST /sandbox/control`` takes the whole bureau down (``{"down": true}``: every inquiry answers
503) or adds latency to every answer (``{"latency_ms": 200}``). Nothing confidential is kept: an
inquiry is stored with a hash of its subject.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, request

SLOW_SECONDS = float(os.environ.get("VIGIL_BUREAU_SLOW_SECONDS", "4"))
HANG_SECONDS = 60.0
BUREAUS = ("equifax", "experian", "transunion")
REASONS = ["Proportion of balances to credit limits is too high", "Length of time accounts have been established"]


class Bureau:
    """The sandbox's state: inquiries by idempotency key, in memory (a restart is a fresh bureau)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inquiries: dict[str, dict[str, Any]] = {}  # key -> {fingerprint, done, answer, requests}
        self.prechecks: dict[str, dict[str, Any]] = {}  # ADT PreCheck answers by idempotency key
        self.precheck_requests: dict[str, int] = {}
        self.down = False
        self.latency = 0.0
        # requests being answered right now, and the most ever at once: bureau inquiries and ADT apart
        self.in_flight = {"bureau": 0, "adt": 0}
        self.max_in_flight = {"bureau": 0, "adt": 0}

    def reset(self) -> None:
        with self.lock:
            self.inquiries.clear()
            self.down, self.latency = False, 0.0
            self.max_in_flight = dict(self.in_flight)

    @contextlib.contextmanager
    def serving(self, system: str) -> Iterator[None]:
        """Counts one request of ``system`` in flight while the block runs."""
        with self.lock:
            self.in_flight[system] += 1
            self.max_in_flight[system] = max(self.max_in_flight[system], self.in_flight[system])
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[system] -= 1

    def concurrency(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {
                system: {"in_flight": self.in_flight[system], "max_in_flight": self.max_in_flight[system]}
                for system in self.in_flight
            }


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _answer(subject: dict[str, Any], bureau_name: str, key: str) -> tuple[dict[str, Any], int]:
    ssn = "".join(ch for ch in str(subject.get("ssn") or "") if ch.isdigit())
    last4 = ssn[-4:]
    transaction_id = f"{bureau_name[:2].upper()}-{uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:12].upper()}"
    if last4 == "1000":
        return {"result": "no_hit", "transaction_id": transaction_id, "message": "No file found for the subject."}, 200
    if last4 == "1001":
        return {
            "result": "frozen",
            "transaction_id": transaction_id,
            "message": "The subject's file is frozen; the subject must lift the freeze.",
        }, 200
    score = 300 + int(last4) % 551
    return {
        "result": "hit",
        "transaction_id": transaction_id,
        "score": score,
        "model": "FICO 8",
        "reason_codes": REASONS if score < 650 else [],
        "tradelines": 7,
    }, 200


def create_app(bureau: Bureau | None = None) -> Flask:
    state = bureau or Bureau()
    app = Flask("vigil_sandbox_bureau")
    app.extensions["bureau"] = state

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok", "process": "sandbox-bureau"})

    @app.get("/readyz")
    def readyz() -> Response:
        return _json({"status": "ready", "checks": {}})

    @app.post("/v1/inquiries")
    def inquire() -> Response:
        with state.serving("bureau"):  # every request counts, a refused one too
            return _inquire()

    def _inquire() -> Response:
        key = request.headers.get("Idempotency-Key", "")
        if not 8 <= len(key) <= 200:
            return _json({"error": "bad_request", "message": "Send an Idempotency-Key header (8-200 chars)."}, 400)
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("subject"), dict):
            return _json({"error": "bad_request", "message": "Send a JSON body with a subject."}, 400)
        bureau_name = str(body.get("bureau") or "")
        if bureau_name not in BUREAUS:
            return _json({"error": "bad_request", "message": f"Unknown bureau; one of {', '.join(BUREAUS)}."}, 400)
        if state.down:
            return _json({"error": "service_unavailable", "message": "The bureau is down for maintenance."}, 503)
        subject = body["subject"]
        last4 = "".join(ch for ch in str(subject.get("ssn") or "") if ch.isdigit())[-4:]
        if len(last4) < 4:
            return _json({"error": "bad_request", "message": "The subject needs an SSN."}, 400)
        if last4 == "1004":
            return _json(
                {"error": "service_unavailable", "message": "The bureau's scoring system is unavailable."}, 503
            )
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with state.lock:
            found = state.inquiries.get(key)
            first = found is None
            if found is not None:
                entry = found
            else:
                entry = state.inquiries[key] = {
                    "fingerprint": fingerprint,
                    "done": threading.Event(),
                    "answer": None,
                    "requests": 0,
                    "bureau": bureau_name,
                    "at": time.time(),
                }
            entry["requests"] += 1
        if entry["fingerprint"] != fingerprint:
            return _json({"error": "conflict", "message": "This Idempotency-Key was used for another inquiry."}, 422)
        if last4 == "1005" and entry["requests"] == 1:
            return _json({"error": "internal_error", "message": "Temporary failure; try again."}, 500)
        if first or (last4 == "1005" and entry["answer"] is None and not entry["done"].is_set()):
            delay = state.latency + {"1002": SLOW_SECONDS, "1003": HANG_SECONDS}.get(last4, 0.0)
            if delay:
                time.sleep(delay)
            answer, status = _answer(subject, bureau_name, key)
            entry["answer"] = (
                answer | {"inquiry_id": f"inq-{uuid.uuid4().hex[:16]}", "bureau": bureau_name},
                status,
            )
            entry["done"].set()
        elif not entry["done"].wait(HANG_SECONDS + SLOW_SECONDS):
            return _json({"error": "timeout", "message": "The first request of this key is still running."}, 504)
        answer, status = entry["answer"]
        return _json(answer | {"replayed": not first}, status)

    @app.post("/adt/v1/prechecks")
    def precheck() -> Response:
        """The sandbox ADT PreCheck: by the SSN's last four digits, ``2001`` declined (with reasons),
        ``2002`` manual review, ``2003`` a 503 every time; any other is approved. One PreCheck per
        Idempotency-Key, like the bureau."""
        with state.serving("adt"):  # every request counts, a refused one too
            return _precheck()

    def _precheck() -> Response:
        key = request.headers.get("Idempotency-Key", "")
        body = request.get_json(silent=True)
        if not 8 <= len(key) <= 200 or not isinstance(body, dict) or not isinstance(body.get("customer"), dict):
            return _json({"error": "bad_request", "message": "Send an Idempotency-Key and a customer."}, 400)
        if state.down:
            return _json({"error": "service_unavailable", "message": "ADT PreCheck is down for maintenance."}, 503)
        last4 = "".join(ch for ch in str(body["customer"].get("ssn") or "") if ch.isdigit())[-4:]
        if len(last4) < 4:
            return _json({"error": "bad_request", "message": "The customer needs an SSN."}, 400)
        if last4 == "2003":
            return _json({"error": "service_unavailable", "message": "ADT PreCheck could not score the order."}, 503)
        if state.latency:
            time.sleep(state.latency)
        with state.lock:
            found = state.prechecks.get(key)
            if found is None:
                reference = f"ADT-{uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:10].upper()}"
                if last4 == "2001":
                    found = {
                        "result": "declined",
                        "reference": reference,
                        "reasons": ["Credit score below the ADT threshold", "Address not serviceable"],
                    }
                elif last4 == "2002":
                    found = {"result": "manual_review", "reference": reference, "reasons": ["Identity check"]}
                else:
                    found = {"result": "approved", "reference": reference, "reasons": []}
                state.prechecks[key] = found
                state.precheck_requests[key] = 0
            state.precheck_requests[key] += 1
        return _json(found)

    def listing(name: str, rows: list[dict[str, Any]], caller: str) -> dict[str, Any]:
        """A test listing: its rows, and the calls to ``caller`` (adt or bureau) in flight now and at most."""
        return {
            "count": len(rows),
            name: rows,
            "in_flight": state.in_flight[caller],
            "max_in_flight": state.max_in_flight[caller],
        }

    @app.get("/sandbox/prechecks")
    def prechecks() -> Response:
        prefix = request.args.get("key_prefix", "")
        with state.lock:
            rows = [
                {"key": key, "result": p["result"], "requests": state.precheck_requests[key]}
                for key, p in state.prechecks.items()
                if key.startswith(prefix)
            ]
            return _json(listing("prechecks", rows, "adt"))

    @app.get("/sandbox/inquiries")
    def inquiries() -> Response:
        """What tests assert on: one entry per inquiry (idempotency key), with how often it was requested."""
        prefix = request.args.get("key_prefix", "")
        with state.lock:
            rows = [
                {"key": key, "bureau": e["bureau"], "requests": e["requests"], "answered": e["done"].is_set()}
                for key, e in state.inquiries.items()
                if key.startswith(prefix)
            ]
            health = {"down": state.down, "latency_ms": int(state.latency * 1000)}
            return _json(listing("inquiries", rows, "bureau") | health)

    @app.post("/sandbox/control")
    def control() -> Response:
        body = request.get_json(silent=True) or {}
        with state.lock:
            if "down" in body:
                state.down = bool(body["down"])
            if "latency_ms" in body:
                state.latency = max(0.0, min(float(body["latency_ms"]), 30_000.0)) / 1000
            if body.get("reset_max_in_flight"):
                state.max_in_flight = dict(state.in_flight)
        return _json({"down": state.down, "latency_ms": int(state.latency * 1000)})

    @app.get("/sandbox/concurrency")
    def concurrency() -> Response:
        """``{"bureau": {"in_flight", "max_in_flight"}, "adt": {…}}``: the most requests held at once
        since the start or the last ``reset_max_in_flight``, for checking a caller's concurrency cap."""
        return _json(state.concurrency())

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_here(error: Any) -> Response:
        return _json({"error": "not_found", "message": "No such sandbox endpoint."}, getattr(error, "code", 404))

    return app


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    logging.basicConfig(level=logging.WARNING)
    host = os.environ.get("VIGIL_BIND_HOST", "127.0.0.1")
    port = int(os.environ.get("VIGIL_BUREAU_PORT") or "8010")
    server = make_server(host, port, create_app(), threaded=True)
    print(f"sandbox bureau on http://{host}:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
