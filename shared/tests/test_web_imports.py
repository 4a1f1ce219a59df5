"""Idle memory (issue 10, bench/bench_idle_rss.py): a web process loads neither Celery nor kombu.

A web process writes its events to its own database (the transactional outbox); the relay publishes
them and the worker consumes them, so Celery and kombu (about 6.6 MB) are theirs. A web request that
sends a task itself (a dead letter sent again, a billing charge) loads them when it does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vigil_runner.stack import load_or_create_secrets
from vigil_shared.testing import TEST_SECRET

# What a gunicorn master and its worker of every service and of the gateway import and run: the
# service's program, the worker class, the app factory, then requests: readiness, a refused call,
# and a customer created (its event written to the outbox), with Celery and kombu still unloaded.
WEB_PROCESS = """
import importlib, sys
from vigil_shared import gunicorn_worker, migrations
from vigil_shared.testing import identity_headers
from vigil_gateway.app import create_app as create_gateway

names = ("customer", "property", "billing", "credit")
apps = [importlib.import_module(f"vigil_{name}.app").create_app() for name in names]
apps.append(create_gateway())
databases = [app.extensions["vigil_runtime"].db for app in apps[:-1]] + [apps[-1].extensions["vigil_gateway_db"]]
for name, database in zip((*names, "gateway"), databases, strict=True):
    migrations.upgrade(f"vigil_{name}", database.url)
for app in apps:
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": {"status": "ok"}}, ready.get_json()
    assert client.get("/api/v1/customers").status_code == 401
body = {"location_id": 1, "first_name": "Dana", "last_name": "Reyes", "city": "Provo", "state": "UT",
        "primary_phone": "801-555-0100", "account_type": "residential"}
customer = apps[0].test_client()
created = customer.post("/api/v1/customers", json=body, headers=identity_headers())
assert created.status_code == 201, created.get_data(as_text=True)
outbox = customer.get("/api/v1/ops/customer/outbox", headers=identity_headers()).get_json()
assert [event["type"] for event in outbox["items"]] == ["customer.created"], outbox
print(sorted({module.split(".")[0] for module in sys.modules} & {"celery", "kombu"}))
"""


def loaded_in_a_fresh_process(code: str, var_dir: Path) -> str:
    """What ``code`` prints, run in a fresh interpreter on its own ``var/`` (SQLite databases, secrets)."""
    env = (
        os.environ
        | load_or_create_secrets(var_dir)
        | {"VIGIL_VAR_DIR": str(var_dir), "VIGIL_INTERNAL_SECRET": TEST_SECRET, "VIGIL_LOG_LEVEL": "WARNING"}
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_web_processes_load_neither_celery_nor_kombu(tmp_path: Path) -> None:
    assert loaded_in_a_fresh_process(WEB_PROCESS, tmp_path) == "[]"


CUSTOMER_WEB_PROCESS = """
import sys
from vigil_shared import gunicorn_worker, migrations
from vigil_shared.testing import identity_headers
from vigil_customer.app import create_app

app = create_app()
migrations.upgrade("vigil_customer", app.extensions["vigil_runtime"].db.url)
body = {"location_id": 1, "first_name": "Dana", "last_name": "Reyes", "city": "Provo", "state": "UT",
        "primary_phone": "801-555-0100", "account_type": "residential", "ssn": "200-45-6789"}
created = app.test_client().post("/api/v1/customers", json=body, headers=identity_headers())
assert created.status_code == 201, created.get_data(as_text=True)
print(sorted({module.split(".")[0] for module in sys.modules} & {"celery", "kombu", "urllib3"}))
"""


def test_the_customer_web_process_loads_no_http_client(tmp_path: Path) -> None:
    """The customer service imports ``customer_replica`` for the credit subject's fields only; it never
    asks itself, so urllib3 is loaded at the first lookup of a service that does."""
    assert loaded_in_a_fresh_process(CUSTOMER_WEB_PROCESS, tmp_path) == "[]"
