"""The sandbox payment processor: a small Flask app, its own process (``vigil-sandbox-processor``).

It plays the part of a card/ACH processor so the whole payment flow runs on one machine:

- ``POST /v1/tokens`` is called by the *client* (as a browser calls a real processor's JS library)
  with the card number or bank account; it answers a token and the safe facts (brand, last four,
  expiry, holder). Vigil never sees the number.
- ``GET /v1/tokens/<token>`` lets Vigil (with its secret key) read those safe facts back, so what it
  stores comes from the processor, not from the client.
- ``POST /v1/charges`` and ``POST /v1/refunds`` need the secret key and an ``Idempotency-Key``: a
  repeated key answers the first result again and never charges twice.

Deterministic test cards (any future expiry, any CVC):

============================  ==========================================================
``4242 4242 4242 4242``        approved (Visa); ``5555 5555 5555 4444`` Mastercard approved
``4000 0000 0000 0002``        declined: ``card_declined`` (hard)
``4000 0000 0000 9995``        declined: ``insufficient_funds`` (soft: worth retrying later)
``4000 0000 0000 0069``        declined: ``expired_card`` (hard)
``4000 0000 0000 0119``        network error: 503 ``processing_error`` on every attempt
``4000 0000 0000 1000``        slow: approved after ``SLOW_SECONDS``
============================  ==========================================================

Refusals and lost answers, for the whole sandbox (``POST /sandbox/control``):
``{"refuse_refunds": n}`` refuses the next ``n`` refunds (402 ``refund_refused``; like any answer, a
refusal is what its ``Idempotency-Key`` replays from then on); ``{"lose_refund_answers": n}`` makes
the next ``n`` refund requests, replays included, answer 503 *after* the refund is done and remembered
under its key, as when a timeout loses the answer: a retry with the same key gets the first answer,
one with a new key would refund again. ``{"echo_declines": n}`` makes the next ``n`` declines write
their test card's number and the token into their ``failure_code`` and ``failure_message``, as a
careless processor might (Vigil stores and forwards neither). ``GET /sandbox/charges/<id>`` shows a
charge with what was refunded of it.

Bank accounts (ACH): routing ``110000000``, account ``000123456789`` approves, ``000111111116``
declines with ``insufficient_funds``. State (tokens, charges, idempotency keys) lives in a SQLite
file under ``VIGIL_VAR_DIR``, so a restart of the sandbox keeps it.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

SECRET_PREFIX = "sk_test_"
SLOW_SECONDS = float(os.environ.get("VIGIL_PROCESSOR_SLOW_SECONDS", "4"))

APPROVE = "approve"
CARDS: dict[str, tuple[str, str]] = {  # number -> (brand, behaviour)
    "4242424242424242": ("visa", APPROVE),
    "5555555555554444": ("mastercard", APPROVE),
    "378282246310005": ("amex", APPROVE),
    "4000000000000002": ("visa", "card_declined"),
    "4000000000009995": ("visa", "insufficient_funds"),
    "4000000000000069": ("visa", "expired_card"),
    "4000000000000119": ("visa", "processing_error"),
    "4000000000001000": ("visa", "slow"),
}
BANK_ACCOUNTS: dict[str, str] = {"000123456789": APPROVE, "000111111116": "insufficient_funds"}
SOFT_DECLINES = frozenset({"insufficient_funds"})
MESSAGES = {
    "card_declined": "The card was declined.",
    "insufficient_funds": "The account has insufficient funds.",
    "expired_card": "The card has expired.",
}


# The test card of each decline, which ``echo_declines`` writes into the decline's code and message.
ECHOED = {behaviour: number for number, (_, behaviour) in CARDS.items() if behaviour in MESSAGES}


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"}:
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


class Store:
    """Tokens, charges and idempotency keys in one SQLite file (``check_same_thread`` off, one lock)."""

    def __init__(self, path: str):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, facts TEXT, behaviour TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS charges (id TEXT PRIMARY KEY, body TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, request TEXT, status INTEGER, body TEXT)"
        )

    def put_token(self, token: str, facts: dict[str, Any], behaviour: str) -> None:
        with self.lock:
            self.db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (token, json.dumps(facts), behaviour))

    def token(self, token: str) -> tuple[dict[str, Any], str] | None:
        with self.lock:
            row = self.db.execute("SELECT facts, behaviour FROM tokens WHERE id = ?", (token,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def put_charge(self, charge: dict[str, Any]) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO charges VALUES (?, ?)", (charge["id"], json.dumps(charge)))

    def charge(self, charge_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT body FROM charges WHERE id = ?", (charge_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def replay(self, key: str) -> tuple[str, int, dict[str, Any]] | None:
        with self.lock:
            row = self.db.execute("SELECT request, status, body FROM idempotency WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def remember(self, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?, ?)", (key, fingerprint, status, json.dumps(body))
            )


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, **extra}}), status


def create_app(store_path: str | None = None) -> Flask:
    app = Flask("vigil_sandbox_processor")
    var_dir = Path(os.environ.get("VIGIL_VAR_DIR", "./var"))
    if store_path is None:
        var_dir.mkdir(parents=True, exist_ok=True)
        store_path = str(var_dir / "sandbox-processor.sqlite")
    store = Store(store_path)
    app.extensions["sandbox_store"] = store
    charge_lock = threading.Lock()
    faults = {"refuse_refunds": 0, "lose_refund_answers": 0, "echo_declines": 0}  # POST /sandbox/control

    def authorised() -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith(f"Bearer {SECRET_PREFIX}") and len(header) > len(f"Bearer {SECRET_PREFIX}")

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    @app.get("/healthz")
    def health():
        return jsonify({"status": "ok", "process": "sandbox-processor"})

    @app.get("/readyz")
    def ready():
        store.token("")  # the store answers
        return jsonify({"status": "ready", "process": "sandbox-processor", "checks": {"store": {"status": "ok"}}})

    @app.post("/v1/tokens")
    def tokenize():
        """Called by the client with the card or bank details; answers a token and the safe facts."""
        data = body()
        holder = str(data.get("holder") or "")[:100]
        facts: dict[str, Any]
        if "account_number" in data:
            account, routing = str(data.get("account_number", "")), str(data.get("routing_number", ""))
            if not (account.isdigit() and 4 <= len(account) <= 17 and routing.isdigit() and len(routing) == 9):
                return error(422, "invalid_bank_account", "Routing number (9 digits) and account number needed.")
            facts = {"kind": "ach", "brand": "bank", "last4": account[-4:], "exp_month": None, "exp_year": None}
            behaviour = BANK_ACCOUNTS.get(account, APPROVE)
        else:
            number = "".join(str(data.get("number", "")).split())
            if not (number.isdigit() and 12 <= len(number) <= 19 and luhn_ok(number)):
                return error(422, "invalid_number", "The card number is not valid.")
            month, year = data.get("exp_month"), data.get("exp_year")
            if not (isinstance(month, int) and isinstance(year, int) and 1 <= month <= 12 and 2000 <= year <= 2100):
                return error(422, "invalid_expiry", "exp_month (1-12) and exp_year (four digits) are needed.")
            now = datetime.now(UTC)
            if (year, month) < (now.year, now.month):
                return error(422, "invalid_expiry", "The card's expiry date has passed.")
            brand, behaviour = CARDS.get(number, (brand_of(number), APPROVE))
            facts = {"kind": "card", "brand": brand, "last4": number[-4:], "exp_month": month, "exp_year": year}
        token = f"tok_{secrets.token_hex(12)}"
        facts |= {"token": token, "holder": holder or None}
        store.put_token(token, facts, behaviour)
        return jsonify(facts), 201

    @app.get("/v1/tokens/<token>")
    def read_token(token: str):
        if not authorised():
            return error(401, "unauthorized", "A secret key (sk_test_…) is needed.")
        found = store.token(token)
        if found is None:
            return error(404, "no_such_token", "No such token.")
        return jsonify(found[0])

    def idempotent(handler, lost: str | None = None):
        """A charge or refund: for a caller with the secret key, run once per ``Idempotency-Key``.
        ``lost`` names the fault count that, while above zero, replaces the answer with a 503."""
        if not authorised():
            return error(401, "unauthorized", "A secret key (sk_test_…) is needed.")
        key = request.headers.get("Idempotency-Key", "")
        if not key or len(key) > 255:
            return error(400, "idempotency_key_required", "An Idempotency-Key header (at most 255 characters).")
        fingerprint = f"{request.path}:{json.dumps(body(), sort_keys=True)}"
        with charge_lock:  # one request per key at a time: a concurrent retry waits for the first
            seen = store.replay(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    return error(422, "idempotency_key_reused", "This key was used with another request.")
                status, answer, replayed = seen[1], seen[2], True
            else:
                status, answer = handler()
                replayed = False
                if status < 500:  # a server error is not an answer: a retry runs again
                    store.remember(key, fingerprint, status, answer)
            if lost is not None and faults[lost] > 0:  # done and remembered, but the answer never arrives
                faults[lost] -= 1
                return error(503, "timeout", "The answer was lost on the way (sandbox).")
        response = jsonify(answer)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response, status

    @app.post("/v1/charges")
    def charge():
        def run() -> tuple[int, dict[str, Any]]:
            data = body()
            amount, currency = data.get("amount"), data.get("currency")
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                return 400, {"error": {"code": "invalid_amount", "message": "amount: positive integer minor units"}}
            found = store.token(str(data.get("token", "")))
            if found is None:
                return 400, {"error": {"code": "no_such_token", "message": "No such token."}}
            behaviour = found[1]
            if behaviour == "processing_error":
                return 503, {"error": {"code": "processing_error", "message": "Try again later."}}
            if behaviour == "slow":
                time.sleep(SLOW_SECONDS)
            charge_id = f"ch_{secrets.token_hex(12)}"
            result: dict[str, Any] = {
                "id": charge_id,
                "amount": amount,
                "currency": currency,
                "amount_refunded": 0,
                "created": datetime.now(UTC).isoformat(),
            }
            if behaviour in MESSAGES:
                code, message = behaviour, MESSAGES[behaviour]
                if faults["echo_declines"] > 0:  # a careless processor: its words name the card and the token
                    faults["echo_declines"] -= 1
                    echoed = f"{ECHOED[behaviour]}_{data.get('token')}"
                    code, message = f"{behaviour}_{echoed}", f"{message} ({echoed})"
                result |= {
                    "status": "failed",
                    "failure_code": code,
                    "failure_message": message,
                    "soft_decline": behaviour in SOFT_DECLINES,
                }
                store.put_charge(result)
                return 402, result
            result["status"] = "succeeded"
            store.put_charge(result)
            return 201, result

        return idempotent(run)

    @app.post("/v1/refunds")
    def refund():
        def run() -> tuple[int, dict[str, Any]]:
            data = body()
            original = store.charge(str(data.get("charge", "")))
            if original is None or original.get("status") != "succeeded":
                return 400, {"error": {"code": "no_such_charge", "message": "No succeeded charge of that id."}}
            amount = data.get("amount", original["amount"] - original["amount_refunded"])
            if not isinstance(amount, int) or amount <= 0 or amount > original["amount"] - original["amount_refunded"]:
                return 400, {"error": {"code": "invalid_amount", "message": "More than what is left to refund."}}
            if faults["refuse_refunds"] > 0:
                faults["refuse_refunds"] -= 1
                return 402, {
                    "id": f"re_{secrets.token_hex(12)}",
                    "charge": original["id"],
                    "amount": amount,
                    "status": "failed",
                    "failure_code": "refund_refused",
                    "failure_message": "The refund was refused (sandbox).",
                }
            original["amount_refunded"] += amount
            store.put_charge(original)
            return 201, {
                "id": f"re_{secrets.token_hex(12)}",
                "charge": original["id"],
                "amount": amount,
                "status": "succeeded",
            }

        return idempotent(run, lost="lose_refund_answers")

    @app.post("/sandbox/control")
    def control():
        data = body()
        asked = {name: data[name] for name in faults if name in data}
        for name, value in asked.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
                return error(400, "invalid_control", f"{name}: an integer from 0 to 1000.")
        with charge_lock:
            faults.update(asked)
            return jsonify(dict(faults))

    @app.get("/sandbox/charges/<charge_id>")
    def charge_state(charge_id: str):
        found = store.charge(charge_id)
        if found is None:
            return error(404, "no_such_charge", "No such charge.")
        return jsonify(found)

    return app


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import run_simple

    host = os.environ.get("VIGIL_BIND_HOST", "127.0.0.1")
    port = int(os.environ.get("VIGIL_PROCESSOR_PORT", "8090"))
    run_simple(host, port, create_app(), threaded=True, use_reloader=False)
    return 0
