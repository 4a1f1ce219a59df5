"""What the gateway's database keeps per webhook event and per delivery, by table: a size benchmark.

    .venv/bin/python bench/bench_feed_size.py [--events 2000] [--subscriptions 5] [--backend embedded|postgres]
                                              [--compare main] [--no-compare]

It drives the gateway worker's own code (:class:`vigil_gateway.worker.WebhookRuntime`: the intake of
events, the claim that builds, encrypts and stores each body, the recorder of attempts, the prune) on a
fresh gateway database migrated to head, with the services stood in for by a reader that answers a
customer or property record of a realistic size and every receiver answering ``200`` at once (no HTTP:
``webhooks.post`` is replaced). No stack, no broker: what is measured is the rows, not the time.

``--events`` events (half ``customer.updated`` with their history, half ``property.updated``) go to
``--subscriptions`` subscriptions, all owned by the administrator (one owner's rights: every delivery of
an event carries the same body, as when a dealer's CRM, dashboard and archive hooks share an owner).
Printed, for the database just after every delivery succeeded, then "8 days later" (every row's time
moved back 8 days, the worker's prune run), and on SQLite also the file itself (pages in use and free):

- bytes per event and per delivery of each table, indexes included (SQLite ``dbstat``; PostgreSQL
  ``pg_total_relation_size`` after a ``VACUUM``);
- the **floor**: the raw event JSON as the relay sent it, and the body as sent (plaintext JSON).

``--compare REF`` (default ``main``) runs the same measurement a second time with REF's ``gateway`` and
``shared`` packages (``git archive`` into a temporary folder, put first on ``PYTHONPATH``) in a child
process, and prints both side by side: before and after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A customer as the customer service answers ``GET /customers/{id}`` (masked for every webhook owner).
CUSTOMER = {
    "kind": "customer",
    "first_name": "Dana",
    "last_name": "Whitfield",
    "company_name": None,
    "email": "dana.whitfield@example.com",
    "phone": "+1 613 555 0142",
    "mobile_phone": "+1 613 555 0199",
    "work_phone": None,
    "address_line1": "1204 Riverside Drive",
    "address_line2": "Unit 4",
    "city": "Kanata",
    "state": "ON",
    "postal_code": "K2K 3B9",
    "country": "CA",
    "ssn": "***-**-6789",
    "birthdate": "****-**-14",
    "status": "active",
    "source": "door-to-door",
    "sales_rep": "Morgan Lee",
    "sale_date": "2026-10-02",
    "contract_term_months": 36,
    "monthly_rate": {"amount": 4299, "currency": "CAD"},
    "installer": "Chris Patel",
    "install_date": "2026-10-09",
    "monitored_by": "Acme Monitoring",
    "monitoring_company_id": 4,
    "parent_customer_id": None,
    "archived": False,
    "tags": ["vip", "referral"],
    "custom_fields": {"gate_code_hint": "ask owner", "pets": "dog"},
    "created_at": "2026-10-01T14:03:00Z",
    "updated_at": "2026-12-06T01:22:03Z",
    "version": 7,
}
PROPERTY = {
    "name": "Main residence",
    "address_line1": "1204 Riverside Drive",
    "address_line2": "Unit 4",
    "city": "Kanata",
    "state": "ON",
    "postal_code": "K2K 3B9",
    "country": "CA",
    "account_number": "CS-100142",
    "central_station": "Acme Monitoring",
    "monitoring_status": "active",
    "panel_type": "DSC PowerSeries Neo",
    "communicator": "LTE",
    "zones": 18,
    "passcode": "****",
    "active": True,
    "created_at": "2026-10-01T14:05:00Z",
    "updated_at": "2026-12-06T01:22:03Z",
    "version": 4,
}


class Reader:
    """The services, as the worker reads them for a payload: every record visible, masked."""

    def get(self, service, path, identity, params=None):
        if path.endswith("/history"):
            return {
                "items": [
                    {"request_id": "req-1", "field": "city", "old_value": "Ottawa", "new_value": "Kanata"},
                    {
                        "request_id": "req-1",
                        "field": "phone",
                        "old_value": "+1 613 555 0100",
                        "new_value": "+1 613 555 0142",
                    },
                ]
            }
        if path == "/api/v1/properties":
            ids = params["id"]
            return {"items": [{"id": i, "customer_id": i, **PROPERTY} for i in ids], "total": len(ids)}
        record_id = int(path.rsplit("/", 1)[1])
        if service == "property":
            return {"id": record_id, "customer_id": record_id, **PROPERTY}
        return {"id": record_id, "location_id": 1, **CUSTOMER}


def event_message(n: int) -> dict:
    if n % 2:
        event_type, data = "property.updated", {"property_id": n, "customer_id": n, "changed": ["monitoring_status"]}
    else:
        event_type = "customer.updated"
        data = {"customer_id": n, "location_id": 1, "changed": ["city", "phone"], "archived": False}
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
        "source": event_type.split(".")[0],
        "request_id": "req-1",
    }


def sizes(db, full: bool = False) -> dict[str, int]:
    """Bytes of each table of the gateway's webhooks and feed, its indexes included (PostgreSQL: after a
    ``VACUUM``, the room of dead row versions still counted as the table's; ``full``: ``VACUUM FULL``,
    the live rows alone)."""
    from sqlalchemy import text  # noqa: PLC0415 - the child process imports REF's copy

    tables = ("feed_events", "webhook_deliveries", "webhook_attempts", "webhook_bodies", "record_locations")
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            found = {}
            for table in tables:
                if conn.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
                    continue
                conn.execute(text(f"VACUUM {'FULL ' if full else ''}{table}"))
                found[table] = conn.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": table})
                for name, size in conn.execute(
                    text(
                        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                        "WHERE indrelid = to_regclass(:t)"
                    ),
                    {"t": table},
                ):
                    found[f"{table} · {name}"] = size
            return found
        rows = conn.execute(
            text(
                "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat AS s JOIN sqlite_master AS m ON m.name = s.name "
                "GROUP BY m.tbl_name"
            )
        ).all()
        found = {name: int(size) for name, size in rows if name in tables}
        for table, name, size in conn.execute(
            text(
                "SELECT m.tbl_name, m.name, SUM(s.pgsize) FROM dbstat AS s JOIN sqlite_master AS m "
                "ON m.name = s.name WHERE m.type = 'index' GROUP BY m.name"
            )
        ).all():
            if table in tables:
                found[f"{table} · {name}"] = int(size)
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))  # the file as it is once the WAL is in it
        page = conn.scalar(text("PRAGMA page_size"))
        found["(file: pages in use)"] = (
            conn.scalar(text("PRAGMA page_count")) - conn.scalar(text("PRAGMA freelist_count"))
        ) * page
        found["(file: free pages)"] = conn.scalar(text("PRAGMA freelist_count")) * page
        found["(file on disk)"] = os.path.getsize(db.engine.url.database)
        return found


def measure(events: int, subscriptions: int, backend: str) -> dict:
    """One run on a fresh database with this process's ``vigil_gateway``; the figures as a dict."""
    from sqlalchemy import select, text  # noqa: PLC0415

    from vigil_gateway import webhooks  # noqa: PLC0415
    from vigil_gateway import worker as worker_module  # noqa: PLC0415
    from vigil_gateway.models import User, WebhookDelivery, WebhookSubscription  # noqa: PLC0415
    from vigil_gateway.settings import GatewaySettings  # noqa: PLC0415
    from vigil_shared import migrations  # noqa: PLC0415
    from vigil_shared.config import Settings  # noqa: PLC0415
    from vigil_shared.db import Database  # noqa: PLC0415
    from vigil_shared.testing import TEST_SECRET, TestDatabases  # noqa: PLC0415

    folder = tempfile.mkdtemp(prefix="vigil-feedsize-")
    databases = TestDatabases(backend, folder)
    url = databases.url_for("gateway")
    try:
        migrations.upgrade("vigil_gateway", url)
        base = Settings.from_env("gateway", database_url=url, internal_secret=TEST_SECRET, broker_url="memory://")
        settings = GatewaySettings.from_env(base=base, secret_key="bench-feed-size-secret-key-0123456789")
        hooks = webhooks.WebhookSettings.from_env()
        db = Database(url)
        cipher = settings.webhook_cipher()
        with db.transaction() as session:
            owner = User(username="admin", password_hash="x", is_admin=True)
            session.add(owner)
            session.flush()
            for n in range(subscriptions):
                session.add(
                    WebhookSubscription(
                        url=f"https://hooks{n}.example.com/vigil",
                        owner_user_id=owner.id,
                        secret=cipher.encrypt(webhooks.new_secret()),
                    )
                )
        runtime = worker_module.WebhookRuntime(
            settings=settings, hooks=hooks, db=db, celery=None, cipher=cipher, reader=Reader(), elsewhere=True
        )
        answer = webhooks.AttemptResult(200, 42, '{"received":true}', None)
        webhooks.post = lambda *args, **kwargs: answer  # every receiver answers at once (no HTTP)
        messages = [event_message(n) for n in range(1, events + 1)]
        raw = sum(len(json.dumps(m, separators=(",", ":"))) for m in messages)
        for start in range(0, events, 100):
            runtime.receive_many(messages[start : start + 100])
        bodies: list[int] = []
        real_send = runtime._send

        def send(subscription_id, url, body, headers, record=None):
            bodies.append(len(body.encode()))
            return real_send(subscription_id, url, body, headers, record)

        runtime._send = send  # type: ignore[method-assign]
        with db.engine.connect() as conn:
            pending = conn.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts).order_by(WebhookDelivery.position)
            ).all()
        per_call = max(1, 10 * subscriptions)  # ten events a claim: under the lanes' 16 in flight
        for start in range(0, len(pending), per_call):
            runtime.deliver_many([(d, a) for d, a in pending[start : start + per_call]], fast=30)
        if runtime._senders is not None:
            runtime._senders.shutdown(wait=True)
        with db.engine.connect() as conn:
            deliveries = conn.scalar(select(WebhookDelivery.id).order_by(WebhookDelivery.id.desc()).limit(1)) or 0
            succeeded = conn.scalar(text("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'succeeded'"))
        fresh = sizes(db)
        fresh_full = sizes(db, full=True) if backend == "postgres" else None
        # 8 days later: every row's time moved back, then the worker's prune (and what it runs after)
        back = timedelta(days=8)
        with db.engine.begin() as conn:
            for table, columns in {
                "feed_events": ("received_at", "occurred_at"),
                "webhook_deliveries": ("created_at", "updated_at"),
                "webhook_attempts": ("at",),
                "webhook_bodies": ("created_at",),
            }.items():
                exists = conn.scalar(
                    text(
                        "SELECT to_regclass(:t) IS NOT NULL"
                        if conn.dialect.name == "postgresql"
                        else "SELECT COUNT(*) FROM sqlite_master WHERE name = :t"
                    ),
                    {"t": table},
                )
                if not exists:
                    continue
                values = {c: datetime.now(UTC) - back for c in columns}
                conn.execute(text(f"UPDATE {table} SET " + ", ".join(f"{c} = :{c}" for c in columns)), values)
        runtime.prune()
        later = sizes(db, full=backend == "postgres")
        db.dispose()
        return {
            "events": events,
            "subscriptions": subscriptions,
            "deliveries": deliveries,
            "succeeded": succeeded,
            "raw_event_bytes": raw / events,
            "body_bytes": sum(bodies) / max(1, len(bodies)),
            "fresh": fresh,
            "fresh_full": fresh_full,
            "later": later,
            "backend": backend,
        }
    finally:
        databases.drop_all()


def export(ref: str) -> str:
    """REF's ``gateway`` and ``shared`` packages in a temporary folder; returns the folder."""
    folder = tempfile.mkdtemp(prefix=f"vigil-feedsize-{ref.replace('/', '-')}-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "gateway", "shared"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def run_child(ref: str, args) -> dict:
    folder = export(ref)
    path = os.pathsep.join([f"{folder}/gateway", f"{folder}/shared"])
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, __file__, "--child", "--events", str(args.events)]
    command += ["--subscriptions", str(args.subscriptions), "--backend", args.backend]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=folder).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["code"] = ref
    return result


def report(results: list[dict]) -> None:
    first = results[0]
    events, deliveries = first["events"], first["deliveries"]
    print(
        f"{events} events to {first['subscriptions']} subscriptions ({deliveries} deliveries, one owner), "
        f"{first['backend']}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"floor: the raw event JSON {first['raw_event_bytes']:.0f} B per event; "
        f"the body as sent {first['body_bytes']:.0f} B per delivery"
    )
    moments = [("fresh", "every delivery succeeded")]
    if first.get("fresh_full"):
        moments += [("fresh_full", "the same, after VACUUM FULL (live rows only)")]
    later = "8 days later, after the prune" + (" and VACUUM FULL" if first.get("fresh_full") else "")
    for moment, title in [*moments, ("later", later)]:
        print(f"\n{title}: bytes per event (per delivery)")
        names = sorted({name for r in results for name in r[moment]})
        header = "| table | " + " | ".join(r["code"] for r in results) + " |"
        print(header)
        print("| --- |" + " --- |" * len(results))
        for name in names:
            cells = []
            for r in results:
                value = r[moment].get(name)
                cells.append("—" if value is None else f"{value / events:,.0f} ({value / deliveries:,.0f})")
            print(f"| {name} | " + " | ".join(cells) + " |")
        totals = [sum(v for k, v in r[moment].items() if not k.startswith("(") and " · " not in k) for r in results]
        print(
            "| **tables in all** | "
            + " | ".join(f"**{t / events:,.0f}** ({t / deliveries:,.0f})" for t in totals)
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="embedded")
    parser.add_argument("--compare", default="main", help="a git ref measured the same way beside this code")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.events, args.subscriptions, args.backend)))
        return
    results = []
    if not args.no_compare:
        results.append(run_child(args.compare, args))
    this = measure(args.events, args.subscriptions, args.backend)
    this["code"] = "this tree"
    results.append(this)
    report(results)


if __name__ == "__main__":
    main()
