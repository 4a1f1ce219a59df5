"""What the gateway's webhook tests deliver with: a local receiver, a stand-in for the services the
payloads are read from, and the webhook settings (their fixtures are in conftest.py)."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vigil_gateway import webhooks

LOCAL = webhooks.WebhookSettings(
    schedule=(0, 0),
    allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    timeout=1.0,
)


class _Server(ThreadingHTTPServer):
    """A receiver's listen backlog as a real one's: socketserver's default of 5 drops the connections
    of several delivery pools opening keep-alive pools at once (a connect timeout, then a retry)."""

    request_queue_size = 128


class Receiver:
    def __init__(self):
        self.received: list[dict] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self.gate: threading.Event | None = None  # when set, each answer waits for it
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.received.append({"headers": dict(self.headers), "body": body})
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                if receiver.gate is not None:
                    receiver.gate.wait(60)  # longer than any test waits: it is released at the end
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class Reader:
    """Stands in for the services: every record is visible, with a masked SSN."""

    def get(self, service, path, identity, params=None):
        assert not any(p.startswith("confidential.") for p in identity.permissions)
        if path.endswith("/history"):
            return {"items": []}
        return {"id": 1, "ssn": "***-**-6789", "city": "Kanata"}
