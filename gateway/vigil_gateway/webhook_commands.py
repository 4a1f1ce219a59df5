"""Changes to webhook subscriptions and their deliveries, one command each (see :mod:`.commands`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, select

from vigil_shared.commands import command
from vigil_shared.db import added, utcnow
from vigil_shared.errors import conflict, not_found, validation_problem

from . import rights, webhooks
from .commands import Context
from .models import FeedEvent, Integration, WebhookDelivery, WebhookSubscription
from .settings import GatewaySettings
from .versions import claim_next_version


def owns(ctx: Context, subscription: WebhookSubscription) -> bool:
    """A subscription is its owner's (the user, or the API key, that created it); administrators see all."""
    if ctx.key_id is not None:
        return subscription.owner_key_id == ctx.key_id
    if ctx.user is None:
        return False
    return ctx.user.is_admin or (subscription.owner_user_id == ctx.user.id and subscription.owner_key_id is None)


def get_subscription(ctx: Context, subscription_id: int) -> WebhookSubscription:
    found = ctx.session.get(WebhookSubscription, subscription_id)
    if found is None or not owns(ctx, found):
        raise not_found("webhook subscription")
    return found


def readable_deliveries(statement: Select[Any], identity: Any) -> Select[Any]:
    """``statement`` (selecting deliveries) narrowed to those of events ``identity`` may see in the feed
    (:func:`webhooks.readable_events`): a delivery skipped because its owner may not read its event is not
    theirs to see either, nor is its existence, its time or its count."""
    events, _ = webhooks.readable_events(select(FeedEvent.event_id), identity)
    return statement.where(WebhookDelivery.event_id.in_(events.scalar_subquery()))


def get_delivery(ctx: Context, subscription_id: int, delivery_id: int) -> WebhookDelivery:
    """One delivery of a subscription of the caller's, of an event the caller may see (404 otherwise)."""
    record = get_subscription(ctx, subscription_id)
    found = ctx.session.scalar(
        readable_deliveries(
            select(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == record.id
            ),
            ctx.identity,
        )
    )
    if found is None:
        raise not_found("delivery")
    return found


def _check_url(url: str, hooks: webhooks.WebhookSettings, field: str = "url") -> None:
    try:
        webhooks.resolve_destination(url, hooks)
    except webhooks.UnsafeDestination as exc:
        raise validation_problem({field: [str(exc)]}) from None


@dataclass(frozen=True)
class NewSubscription:
    record: WebhookSubscription
    secret: str


@command
def create_subscription(
    ctx: Context, data: dict[str, Any], settings: GatewaySettings, hooks: webhooks.WebhookSettings
) -> NewSubscription:
    ctx.require("webhooks.manage")
    _check_url(data["url"], hooks)
    secret = webhooks.new_secret()
    record = WebhookSubscription(
        url=data["url"],
        event_types=data.get("event_types"),
        description=data.get("description"),
        enabled=data.get("enabled", True),
        owner_user_id=ctx.key_creator_id if ctx.key_id is not None else (ctx.user.id if ctx.user else None),
        owner_key_id=ctx.key_id,
        secret=settings.webhook_cipher().encrypt(secret),
    )
    added(ctx.session, record)
    ctx.audit("webhook.created", target_type="webhook", target_id=lambda: str(record.id))
    return NewSubscription(record, secret)


@command
def update_subscription(
    ctx: Context, subscription_id: int, changes: dict[str, Any], hooks: webhooks.WebhookSettings
) -> WebhookSubscription:
    ctx.require("webhooks.manage")
    record = get_subscription(ctx, subscription_id)
    claim_next_version(ctx.session, record, ctx.if_match)
    if "url" in changes:
        _check_url(changes["url"], hooks)
    if changes.get("enabled"):
        record.disabled_reason = record.disabled_at = record.failing_since = None
    return _change(ctx, record, changes, "webhook")


@command
def delete_subscription(ctx: Context, subscription_id: int) -> None:
    ctx.require("webhooks.manage")
    _delete(ctx, get_subscription(ctx, subscription_id), "webhook")


@command
def rotate_secret(
    ctx: Context, subscription_id: int, overlap_seconds: int, settings: GatewaySettings
) -> tuple[str, datetime | None]:
    """A new secret; the old one keeps signing beside it for ``overlap_seconds`` so receivers can switch."""
    ctx.require("webhooks.manage")
    return _rotate(ctx, get_subscription(ctx, subscription_id), overlap_seconds, settings, "webhook")


Record = TypeVar("Record", WebhookSubscription, Integration)


def _change(ctx: Context, record: Record, changes: dict[str, Any], kind: str) -> Record:
    """Applies validated ``changes`` (the caller claimed the version) and audits them."""
    for name, value in changes.items():
        setattr(record, name, value)
    record.updated_at = utcnow()
    ctx.audit(f"{kind}.updated", target_type=kind, target_id=str(record.id))
    return record


def _delete(ctx: Context, record: WebhookSubscription | Integration, kind: str) -> None:
    """Deletes a subscription or an integration at the version the caller's ``If-Match`` names."""
    claim_next_version(ctx.session, record, ctx.if_match)
    record_id = record.id
    ctx.session.delete(record)
    ctx.audit(f"{kind}.deleted", target_type=kind, target_id=str(record_id))


def _rotate(
    ctx: Context,
    record: WebhookSubscription | Integration,
    overlap_seconds: int,
    settings: GatewaySettings,
    kind: str,
) -> tuple[str, datetime | None]:
    """A new signing secret (stored encrypted); the old one stays valid beside it for ``overlap_seconds``."""
    claim_next_version(ctx.session, record, ctx.if_match)
    secret = webhooks.new_secret()
    record.previous_secret = record.secret if overlap_seconds else None
    record.previous_secret_until = utcnow() + timedelta(seconds=overlap_seconds) if overlap_seconds else None
    record.secret = settings.webhook_cipher().encrypt(secret)
    record.updated_at = utcnow()
    ctx.audit(f"{kind}.secret_rotated", target_type=kind, target_id=str(record.id))
    return secret, record.previous_secret_until


def _requeue(delivery: WebhookDelivery) -> None:
    delivery.status = "pending"
    # its body is built again with the owner's rights of now (the one last sent, if still kept, stays
    # named until then: a body ages out after body_retention_days, and a replay never needs it)
    delivery.next_attempt_at = utcnow()  # the worker's sweep sends it


@command
def replay_delivery(ctx: Context, subscription_id: int, delivery_id: int) -> WebhookDelivery:
    ctx.require("webhooks.manage")
    record = get_subscription(ctx, subscription_id)
    delivery = get_delivery(ctx, subscription_id, delivery_id)
    if not record.enabled:
        raise conflict("The subscription is disabled; enable it before replaying.")
    _requeue(delivery)
    ctx.audit("webhook.replayed", target_type="webhook", target_id=str(record.id), details={"delivery": delivery_id})
    return delivery


@command
def replay_since(ctx: Context, subscription_id: int, since: datetime) -> int:
    """Every event received since ``since`` that the subscription wants, delivered again (or for the first
    time, when it was created later or was disabled then)."""
    ctx.require("webhooks.manage")
    record = get_subscription(ctx, subscription_id)
    if not record.enabled:
        raise conflict("The subscription is disabled; enable it before replaying.")
    readable, _ = webhooks.readable_events(select(FeedEvent).where(FeedEvent.received_at >= since), ctx.identity)
    events = ctx.session.scalars(readable.order_by(FeedEvent.position).limit(10_000)).all()
    existing = {
        d.event_id: d
        for d in ctx.session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == record.id,
                WebhookDelivery.event_id.in_([e.event_id for e in events]),
            )
        )
    }
    count = 0
    for event in events:
        if record.event_types is not None and event.type not in record.event_types:
            continue
        delivery = existing.get(event.event_id)
        if delivery is None:
            delivery = WebhookDelivery(
                subscription_id=record.id,
                event_id=event.event_id,
                event_type=event.type,
                position=event.position,
                attempts=0,
            )
            ctx.session.add(delivery)
        _requeue(delivery)
        count += 1
    ctx.audit("webhook.replayed", target_type="webhook", target_id=str(record.id), details={"since": since.isoformat()})
    return count


# --- integrations (central stations) -------------------------------------------------------------


def get_integration(ctx: Context, integration_id: int) -> Integration:
    found = ctx.session.get(Integration, integration_id)
    if found is None:
        raise not_found("integration")
    return found


def _name_free(ctx: Context, name: str, exclude: int | None = None) -> None:
    statement = select(Integration.id).where(Integration.name == name)
    if exclude is not None:
        statement = statement.where(Integration.id != exclude)
    if ctx.session.scalar(statement) is not None:
        raise conflict("An integration with this name exists.", {"name": ["Already in use."]})


# What a central station's signed messages do: change the monitoring status of the properties it monitors
# (and link those of its monitoring company not linked yet), in whatever office they are.
STATION_REACH = ("properties.modify",)


def ensure_may_hand_a_station(ctx: Context) -> None:
    """403 unless the caller holds :data:`STATION_REACH` at every location, those opened later included.

    An integration's secret is a credential: whoever holds it signs account statuses that change the
    monitoring status of the station's properties in every office. ``integrations.manage`` is company-wide
    but gives no right over properties, so making an integration, being shown a new secret, or pointing
    one at another monitoring company needs those rights where the station reaches ("nobody gives what
    they do not hold", as for API keys and grants: :func:`rights.ensure_can_grant`)."""
    rights.ensure_can_grant(ctx.session, ctx.identity, STATION_REACH, None, field="integration")


@command
def create_integration(
    ctx: Context, data: dict[str, Any], settings: GatewaySettings, hooks: webhooks.WebhookSettings
) -> Integration:
    ctx.require("integrations.manage")
    ensure_may_hand_a_station(ctx)
    _name_free(ctx, data["name"])
    if data.get("accounts_url"):
        _check_url(data["accounts_url"], hooks, "accounts_url")
    secret = webhooks.new_secret()
    record = Integration(
        name=data["name"],
        rate_limit_per_minute=data["rate_limit_per_minute"],
        enabled=data["enabled"],
        accounts_url=data.get("accounts_url"),
        monitoring_company_id=data.get("monitoring_company_id"),
        created_by=ctx.user.id if ctx.user else ctx.key_creator_id,
        secret=settings.webhook_cipher().encrypt(secret),
    )
    added(ctx.session, record)
    record.plaintext_secret = secret
    ctx.audit("integration.created", target_type="integration", target_id=lambda: str(record.id))
    return record


@command
def update_integration(
    ctx: Context, integration_id: int, changes: dict[str, Any], hooks: webhooks.WebhookSettings
) -> Integration:
    ctx.require("integrations.manage")
    record = get_integration(ctx, integration_id)
    if "monitoring_company_id" in changes and changes["monitoring_company_id"] != record.monitoring_company_id:
        ensure_may_hand_a_station(ctx)
    claim_next_version(ctx.session, record, ctx.if_match)
    if changes.get("accounts_url"):
        _check_url(changes["accounts_url"], hooks, "accounts_url")
    if "name" in changes:
        _name_free(ctx, changes["name"], exclude=record.id)
    return _change(ctx, record, changes, "integration")


@command
def delete_integration(ctx: Context, integration_id: int) -> None:
    ctx.require("integrations.manage")
    _delete(ctx, get_integration(ctx, integration_id), "integration")


@command
def rotate_integration_secret(
    ctx: Context, integration_id: int, overlap_seconds: int, settings: GatewaySettings
) -> tuple[str, datetime | None]:
    ctx.require("integrations.manage")
    record = get_integration(ctx, integration_id)
    ensure_may_hand_a_station(ctx)
    return _rotate(ctx, record, overlap_seconds, settings, "integration")


@command
def request_drift_check(ctx: Context, integration_id: int) -> Integration:
    """Asks the gateway worker to compare the station's account list with Vigil's properties now."""
    ctx.require("integrations.manage")
    record = get_integration(ctx, integration_id)
    if not record.accounts_url:
        raise conflict("Set the integration's accounts_url (the station's account list) first.")
    record.drift_requested_at = utcnow()
    return record
