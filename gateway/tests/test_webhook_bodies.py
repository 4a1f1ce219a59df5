"""What the gateway keeps of webhook deliveries: each body as sent once (however many deliveries sent it),
compressed then encrypted, for ``body_retention_days``; the delivery log for the feed's retention; and
on SQLite the freed pages handed back to the file system (bench/bench_feed_size.py measures the sizes)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_webhooks import LOCAL, Reader, message, subscribe

from vigil_gateway import webhooks
from vigil_gateway.models import FeedEvent, WebhookAttempt, WebhookBody, WebhookDelivery
from vigil_gateway.worker import WebhookRuntime
from vigil_shared import migrations
from vigil_shared.config import ConfigError
from vigil_shared.db import Database
from vigil_shared.testing import TestDatabases, choose_backend


class ByOwnerReader(Reader):
    """Every record visible, its city as each owner reads it (owners who read alike get one body)."""

    def get(self, service, path, identity, params=None):
        found = super().get(service, path, identity, params)
        if isinstance(found, dict) and "city" in found:
            found = {**found, "city": f"seen by {identity.username}"}
        return found


class LongReader(Reader):
    """Every record visible, with a long note repeating itself (a body that compresses well)."""

    def get(self, service, path, identity, params=None):
        found = super().get(service, path, identity, params)
        return {**found, "notes": "Gate code with the neighbour at Kanata. " * 20} if "city" in found else found


def bodies(db) -> list[WebhookBody]:
    with db.transaction() as session:
        found = list(session.scalars(select(WebhookBody).order_by(WebhookBody.id)))
        session.expunge_all()
        return found


def body_ids(db) -> dict[int, int | None]:
    with db.transaction() as session:
        return dict(session.execute(select(WebhookDelivery.subscription_id, WebhookDelivery.body_id)).all())


def deliver_all(runtime) -> list[str]:
    pairs, runtime.sent[:] = list(runtime.sent), []
    return runtime.deliver_many(pairs, fast=10)


def test_an_events_deliveries_read_alike_keep_one_body_compressed_and_encrypted(
    local_app, client, auth, runtime, receiver, db, settings
):
    created = [subscribe(client, auth, receiver.url) for _ in range(3)]
    runtime.reader = LongReader()
    event = message()
    runtime.receive(event)
    assert deliver_all(runtime) == ["succeeded"] * 3
    [kept] = bodies(db)  # three deliveries, one owner's rights: one body
    assert set(body_ids(db).values()) == {kept.id}
    sent = receiver.received[0]["body"]
    assert {r["body"] for r in receiver.received} == {sent}
    signed_by = set()
    for request in receiver.received:  # each signed with its own subscription's secret
        for n, subscription in enumerate(created):
            try:
                Webhook(subscription["secret"]).verify(sent, request["headers"])
                signed_by.add(n)
            except WebhookVerificationError:
                pass
    assert signed_by == {0, 1, 2}
    cipher = settings.webhook_cipher()
    assert webhooks.open_body(cipher, kept.sealed) == sent.decode()  # what was sent, byte for byte
    for plain in (event["id"].encode(), b"Kanata", b"***-**-6789", sent[:40]):
        assert plain not in kept.sealed  # encrypted at rest
    assert len(kept.sealed) < len(sent) / 2  # compressed before it was encrypted
    assert kept.digest == webhooks.body_digest(cipher, sent.decode()) and sent.decode() not in kept.digest
    other = dataclasses.replace(settings, secret_key="another-gateway-secret-key-0123456789abcdef")
    assert webhooks.body_digest(other.webhook_cipher(), sent.decode()) != kept.digest  # keyed: not a plain hash
    with db.transaction() as session:
        assert session.scalar(select(func.count()).where(WebhookDelivery.payload.is_not(None))) == 0


def test_owners_who_read_an_event_differently_get_a_body_each(local_app, client, auth, runtime, receiver, db):
    from test_webhooks import hook_owner  # noqa: PLC0415

    location = client.post("/api/v1/locations", json={"name": f"Bodies {uuid.uuid4().hex[:6]}"}, headers=auth)
    _, headers, _ = hook_owner(client, auth, location.json["id"])
    runtime.reader = ByOwnerReader()
    subscribe(client, auth, receiver.url)
    subscribe(client, auth, receiver.url)
    subscribe(client, headers, receiver.url)
    runtime.receive(message(location_id=location.json["id"]))
    assert deliver_all(runtime) == ["succeeded"] * 3
    kept = bodies(db)
    assert len(kept) == 2  # the administrator's two deliveries share one, the other owner's has its own
    ids = list(body_ids(db).values())
    assert sorted(ids.count(body.id) for body in kept) == [1, 2]


def test_a_retry_of_the_same_body_keeps_no_second_copy_and_a_changed_record_is_kept_anew(
    local_app, client, auth, runtime, receiver, db
):
    subscribe(client, auth, receiver.url)
    receiver.answers = [500, 500]
    runtime.receive(message())
    [(delivery_id, token)] = runtime.sent
    assert runtime.deliver(delivery_id, token) == "retry"
    assert runtime.deliver(delivery_id, token + 1) == "retry"
    [first] = bodies(db)
    assert body_ids(db) == {body_ids(db).popitem()[0]: first.id}
    runtime.reader = ByOwnerReader()  # the record reads otherwise now: the next attempt sends another body
    runtime._cache.clear()  # (bodies are reused for a few seconds)
    assert runtime.deliver(delivery_id, token + 2) == "succeeded"
    assert [b.id for b in bodies(db)][0] == first.id and len(bodies(db)) == 2
    with db.transaction() as session:
        assert session.get(WebhookDelivery, delivery_id).body_id == bodies(db)[1].id  # the body last sent


def age(db, days: float) -> None:
    """Every event, delivery, attempt and body made ``days`` earlier."""
    then = datetime.now(UTC) - timedelta(days=days)
    with db.transaction() as session:
        session.execute(update(FeedEvent).values(received_at=then))
        session.execute(update(WebhookDelivery).values(created_at=then, updated_at=then))
        session.execute(update(WebhookAttempt).values(at=then))
        session.execute(update(WebhookBody).values(created_at=then))


def test_bodies_go_after_a_week_the_delivery_log_after_the_feeds_retention_and_a_replay_still_sends(
    local_app, client, auth, runtime, receiver, db
):
    created = subscribe(client, auth, receiver.url)
    location = client.post("/api/v1/locations", json={"name": f"Aged {uuid.uuid4().hex[:6]}"}, headers=auth)
    runtime.receive(message(location_id=location.json["id"]))
    assert deliver_all(runtime) == ["succeeded"]
    age(db, 6.9)
    runtime.prune()
    assert len(bodies(db)) == 1  # within the week
    age(db, 7.1)
    runtime.prune()
    assert bodies(db) == []  # the body is gone …
    with db.transaction() as session:
        [delivery] = session.scalars(select(WebhookDelivery)).all()
        assert delivery.status == "succeeded" and delivery.body_id is not None  # … its log is not
        assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 1
    detail = client.get(f"/api/v1/webhooks/{created['id']}/deliveries/{delivery.id}", headers=auth)
    assert detail.status_code == 200
    assert [a["status_code"] for a in detail.json["attempt_log"]] == [200]
    assert detail.json["attempt_log"][0]["response_excerpt"] == "hello"
    feed = client.get("/api/v1/events", headers=auth).json
    assert len(feed["items"]) == 1  # the change feed keeps the event its 30 days
    replay = client.post(f"/api/v1/webhooks/{created['id']}/deliveries/{delivery.id}/replay", headers=auth)
    assert replay.status_code == 202
    assert runtime.sweep() == 1
    assert deliver_all(runtime) == ["succeeded"]  # built anew from the feed and the record: nothing lost
    assert receiver.received[-1]["body"] == receiver.received[0]["body"]
    [again] = bodies(db)
    assert body_ids(db) == {created["id"]: again.id}
    age(db, 30.5)
    runtime.prune()
    with db.transaction() as session:
        for model in (FeedEvent, WebhookDelivery, WebhookAttempt, WebhookBody):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def test_a_shorter_body_retention_is_followed(local_app, client, auth, runtime, receiver, db):
    subscribe(client, auth, receiver.url)
    runtime.receive(message())
    deliver_all(runtime)
    age(db, 1.5)
    runtime.prune()
    assert len(bodies(db)) == 1
    runtime.hooks = dataclasses.replace(LOCAL, body_retention_days=1)
    runtime.prune()
    assert bodies(db) == []


@pytest.fixture
def sqlite_gateway(tmp_path, settings):
    databases = TestDatabases("embedded", str(tmp_path))
    url = databases.url_for("gateway_pages")
    migrations.upgrade("vigil_gateway", url)
    database = Database(url)
    yield (
        database,
        WebhookRuntime(
            settings=settings, hooks=LOCAL, db=database, celery=None, cipher=settings.webhook_cipher(), reader=Reader()
        ),
    )  # type: ignore[arg-type]
    database.dispose()
    databases.drop_all()


def test_on_sqlite_the_pages_the_prune_frees_go_back_to_the_file_system(sqlite_gateway):
    database, runtime = sqlite_gateway
    path = database.engine.url.database
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental, from migration 0014
    old = datetime.now(UTC) - timedelta(days=8)
    with database.transaction() as session:
        for n in range(3000):
            session.add(WebhookBody(digest=f"d{n}", sealed=uuid.uuid4().bytes * 40, created_at=old))
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    import os  # noqa: PLC0415

    full = os.path.getsize(path)
    runtime.prune()
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
        assert conn.exec_driver_sql("PRAGMA page_count").scalar() < pages / 4
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(path) < full / 4  # the file itself shrank


def test_the_migration_empties_the_bodies_kept_per_delivery(tmp_path):
    databases = TestDatabases(choose_backend(), str(tmp_path))
    url = databases.url_for("gateway_0014")
    try:
        migrations.upgrade("vigil_gateway", url, "0013")
        database = Database(url)
        sqlite = database.engine.dialect.name == "sqlite"
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO webhook_subscriptions (url, enabled, secret, version, created_at, updated_at) "
                    "VALUES ('https://x.example', :yes, 'token', 1, :at, :at) RETURNING id"
                ),
                {"yes": True, "at": datetime.now(UTC)},
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, position, payload, "
                    "status, attempts, created_at, updated_at) SELECT id, 'e1', 'customer.updated', 1, "
                    "'gAAAA-encrypted', 'succeeded', 1, :at, :at FROM webhook_subscriptions"
                ),
                {"at": datetime.now(UTC)},
            )
            if sqlite:
                assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 0
        database.dispose()
        migrations.upgrade("vigil_gateway", url)
        database = Database(url)
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT payload, body_id, status FROM webhook_deliveries")).all() == [
                (None, None, "succeeded")
            ]
            if sqlite:
                assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # the file rebuilt once
        database.dispose()
        migrations.downgrade("vigil_gateway", url, "0013")
    finally:
        databases.drop_all()


def test_with_a_body_retention_of_zero_no_body_is_kept_and_deliveries_go_on(
    local_app, client, auth, runtime, receiver, db
):
    runtime.hooks = dataclasses.replace(LOCAL, body_retention_days=0)
    subscribe(client, auth, receiver.url)
    subscribe(client, auth, receiver.url)
    runtime.receive(message())
    assert deliver_all(runtime) == ["succeeded"] * 2
    assert len(receiver.received) == 2
    assert bodies(db) == [] and set(body_ids(db).values()) == {None}


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "99999"])
def test_a_body_retention_that_is_not_a_number_of_days_is_refused_at_start(monkeypatch, value):
    monkeypatch.setenv("VIGIL_WEBHOOK_BODY_RETENTION_DAYS", value)
    with pytest.raises(ConfigError, match="VIGIL_WEBHOOK_BODY_RETENTION_DAYS"):
        webhooks.WebhookSettings.from_env()
    monkeypatch.setenv("VIGIL_WEBHOOK_BODY_RETENTION_DAYS", "0.5")
    assert webhooks.WebhookSettings.from_env().body_retention_days == 0.5
