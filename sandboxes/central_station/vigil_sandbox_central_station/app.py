"""A sandbox central station: its own process, so the whole monitoring loop runs on one machine.

It behaves like a monitoring company's system as Vigil sees it:

- an **account list** (``GET/PUT/DELETE /accounts[/{number}]``: status and address), which Vigil's
  drift check reads from ``GET /accounts``;
- it **sends signed signals and account statuses** to Vigil (``POST /accounts/{number}/signals``,
  ``POST /accounts/{number}/status``), signed with the integration secret given to it by
  ``PUT /config``, exactly as a real station would (Standard Webhooks v1);
- it **receives Vigil's webhooks** (``POST /webhooks``), verifies their signature with the
  subscription secret given by ``PUT /config``, and lists them (``GET /webhooks/received``),
  each webhook-id once.

State is in memory (a sandbox starts empty). Settings: ``VIGIL_SANDBOX_CENTRAL_STATION_PORT``
(default 8300), ``VIGIL_BIND_HOST``, ``VIGIL_GATEWAY_PORT`` (where Vigil is).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import urllib3
from flask import Flask, jsonify, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server

STATUSES = ("active", "suspended", "cancelled", "in_test")
SIGNALS = ("alarm", "trouble", "restore", "test", "open", "close")


def create_app(vigil_url: str) -> Flask:
    app = Flask("vigil-sandbox-central-station")
    lock = threading.Lock()
    accounts: dict[str, dict[str, Any]] = {}
    config: dict[str, Any] = {"vigil_url": vigil_url, "integration_id": None, "secret": None, "webhook_secret": None}
    received: dict[str, dict[str, Any]] = {}
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)

    def problem(status: int, detail: str):
        body = {"type": "about:blank", "title": "Sandbox refusal", "status": status, "detail": detail}
        return app.response_class(json.dumps(body), status=status, mimetype="application/problem+json")

    @app.get("/healthz")
    def alive():
        return {"status": "ok"}

    @app.get("/readyz")
    def ready():
        return {"status": "ready", "checks": {}}

    @app.put("/config")
    def configure():
        body = request.get_json(silent=True) or {}
        with lock:
            for key in ("vigil_url", "integration_id", "secret", "webhook_secret"):
                if key in body:
                    config[key] = body[key]
        return {k: (v if "secret" not in k else bool(v)) for k, v in config.items()}

    # --- the account list ------------------------------------------------------------------------

    @app.get("/accounts")
    def list_accounts():
        with lock:
            return jsonify({"items": sorted(accounts.values(), key=lambda a: a["account_number"])})

    @app.put("/accounts/<number>")
    def put_account(number: str):
        body = request.get_json(silent=True) or {}
        status = body.get("status", "active")
        if status not in STATUSES:
            return problem(422, f"status must be one of {', '.join(STATUSES)}")
        with lock:
            accounts[number] = {"account_number": number, "status": status, "address": body.get("address")}
            return accounts[number]

    @app.delete("/accounts/<number>")
    def delete_account(number: str):
        with lock:
            accounts.pop(number, None)
        return "", 204

    # --- sending to Vigil ------------------------------------------------------------------------

    def send(path: str, payload: dict[str, Any]):
        if not config["integration_id"] or not config["secret"]:
            return problem(409, "PUT /config with integration_id and secret first")
        body = json.dumps(payload)
        message_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(config["secret"]).sign(message_id, now, body),
            "Content-Type": "application/json",
        }
        url = f"{config['vigil_url']}/api/v1/integrations/{config['integration_id']}/{path}"
        try:
            answer = http.request("POST", url, body=body.encode(), headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            return problem(502, f"Vigil could not be reached: {type(exc).__name__}")
        return {"message_id": message_id, "vigil_status": answer.status, "vigil_answer": _json(answer.data)}

    @app.post("/accounts/<number>/signals")
    def send_signal(number: str):
        body = request.get_json(silent=True) or {}
        if body.get("type") not in SIGNALS:
            return problem(422, f"type must be one of {', '.join(SIGNALS)}")
        payload = {"account_number": number, "type": body["type"]}
        payload |= {k: body[k] for k in ("zone", "user", "description") if body.get(k) is not None}
        return send("signals", payload)

    @app.post("/accounts/<number>/status")
    def send_status(number: str):
        body = request.get_json(silent=True) or {}
        status = body.get("status")
        if status not in STATUSES:
            return problem(422, f"status must be one of {', '.join(STATUSES)}")
        with lock:
            if number in accounts:
                accounts[number]["status"] = status
        return send("account-status", {"account_number": number, "status": status})

    # --- receiving Vigil's webhooks ---------------------------------------------------------------

    @app.post("/webhooks")
    def receive_webhook():
        raw = request.get_data()
        secret = config["webhook_secret"]
        if not secret:
            return problem(409, "PUT /config with webhook_secret first")
        try:
            Webhook(secret).verify(raw, dict(request.headers), json_parse=False)
        except (WebhookVerificationError, ValueError):
            return problem(401, "signature does not verify")
        message_id = request.headers["webhook-id"]
        with lock:
            if message_id not in received:
                received[message_id] = {"id": message_id, "body": _json(raw), "count": 0}
                while len(received) > 1000:
                    received.pop(next(iter(received)))
            received[message_id]["count"] += 1
        return "", 204

    @app.get("/webhooks/received")
    def list_received():
        with lock:
            return jsonify({"items": list(received.values())})

    return app


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def main() -> None:
    port = int(os.environ.get("VIGIL_SANDBOX_CENTRAL_STATION_PORT", "8300"))
    host = os.environ.get("VIGIL_BIND_HOST", "127.0.0.1")
    vigil = f"http://127.0.0.1:{os.environ.get('VIGIL_GATEWAY_PORT', '8000')}"
    server = make_server(host, port, create_app(vigil), threaded=True)
    print(f"sandbox central station on http://{host}:{port} (Vigil at {vigil})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
