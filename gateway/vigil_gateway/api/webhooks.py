"""Outgoing webhook subscriptions, their deliveries and replays, and the change feed."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, url_for
from flask.views import MethodView
from sqlalchemy import select

from vigil_shared.db import utcnow
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, paginate
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import current_identity

from .. import webhook_commands as hooks_commands
from .. import webhooks
from ..context import db_session, settings
from ..models import FeedEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from ..versions import etag_headers
from ..webhook_schemas import (
    AttemptSchema,
    DeliveryArgs,
    DeliveryDetailSchema,
    DeliveryPageSchema,
    FeedArgs,
    FeedPageSchema,
    ReplayedSchema,
    ReplaySchema,
    RotatedSecretSchema,
    RotateSecretSchema,
    SubscriptionCreatedSchema,
    SubscriptionCreateSchema,
    SubscriptionPageSchema,
    SubscriptionPatchSchema,
    SubscriptionSchema,
)
from .common import at_version, context, if_match, record_item

FEED_SETTLE = timedelta(seconds=2)

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1",
    description="Outgoing webhooks (Standard Webhooks v1 signatures) and the change feed; see docs/integrations.md",
)


def hook_settings() -> webhooks.WebhookSettings:
    found = current_app.extensions.get("vigil_gateway_webhooks")
    if found is None:
        found = current_app.extensions["vigil_gateway_webhooks"] = webhooks.WebhookSettings.from_env()
    return found


@blp.route("/webhooks")
class Subscriptions(MethodView):
    @blp.read("webhooks.manage", SubscriptionPageSchema, query=PaginationArgs, query_kwargs=False)
    def get(self, args):
        """List my webhook subscriptions (an administrator sees everyone's)."""
        ctx = context()
        statement = select(WebhookSubscription).order_by(WebhookSubscription.id)
        if ctx.key_id is not None:
            statement = statement.where(WebhookSubscription.owner_key_id == ctx.key_id)
        elif ctx.user is None or not ctx.user.is_admin:
            statement = statement.where(
                WebhookSubscription.owner_user_id == (ctx.user.id if ctx.user else -1),
                WebhookSubscription.owner_key_id.is_(None),
            )
        result = paginate(db_session(), statement, args["page"], args["per_page"])
        return result.body(), 200, result.headers()

    @blp.create("webhooks.manage", SubscriptionCreatedSchema, body=SubscriptionCreateSchema)
    def post(self, data):
        """Subscribe an endpoint; the signing secret is in this response only.

        Loopback, private and link-local addresses are refused (422) unless the operator allows
        their network (``VIGIL_WEBHOOK_ALLOWED_NETWORKS``)."""
        created = hooks_commands.create_subscription(context(), data, settings(), hook_settings())
        created.record.plaintext_secret = created.secret  # transient: dumped in this response only
        location = url_for("webhooks.SubscriptionItem", subscription_id=created.record.id)
        return created.record, 201, etag_headers(created.record, Location=location)


SubscriptionItem = blp.route("/webhooks/<int:subscription_id>")(
    record_item(
        blp,
        "SubscriptionItem",
        "webhooks.manage",
        (SubscriptionSchema, SubscriptionPatchSchema),
        (
            hooks_commands.get_subscription,
            lambda ctx, subscription_id, changes: hooks_commands.update_subscription(
                ctx, subscription_id, changes, hook_settings()
            ),
            hooks_commands.delete_subscription,
        ),
        (
            "Read one subscription; ``disabled_reason`` says why Vigil disabled it.",
            "Change the URL, the event types, the description, or enable it again.",
            "Unsubscribe: no more deliveries; its delivery log goes with it.",
        ),
    )
)


@blp.route("/webhooks/<int:subscription_id>/rotate-secret", methods=["POST"])
@at_version(blp, "webhooks.manage", RotateSecretSchema, RotatedSecretSchema)
def rotate_secret(data, subscription_id):
    """A new signing secret, shown once; the old one signs beside it (two ``v1,`` signatures) for
    ``overlap_seconds`` (default a day)."""
    secret, until = hooks_commands.rotate_secret(
        context(if_match()), subscription_id, data["overlap_seconds"], settings()
    )
    return {"secret": secret, "previous_secret_until": until}


@blp.route("/webhooks/<int:subscription_id>/deliveries", methods=["GET"])
@blp.read("webhooks.manage", DeliveryPageSchema, query=DeliveryArgs, query_kwargs=False)
def deliveries(args, subscription_id):
    """The subscription's deliveries, newest first."""
    record = hooks_commands.get_subscription(context(), subscription_id)
    statement = hooks_commands.readable_deliveries(
        select(WebhookDelivery).where(WebhookDelivery.subscription_id == record.id), current_identity()
    )
    if args.get("status"):
        statement = statement.where(WebhookDelivery.status == args["status"])
    statement = statement.order_by(WebhookDelivery.id.desc())
    result = paginate(db_session(), statement, args["page"], args["per_page"])
    return result.body(), 200, result.headers()


@blp.route("/webhooks/<int:subscription_id>/deliveries/<int:delivery_id>", methods=["GET"])
@blp.read("webhooks.manage")
@blp.doc(responses={"200": {"content": {"application/json": {"schema": DeliveryDetailSchema}}}})
def delivery(subscription_id, delivery_id):
    """One delivery with every attempt: status code, latency and the first bytes of the answer."""
    found = hooks_commands.get_delivery(context(), subscription_id, delivery_id)
    attempts = (
        db_session()
        .scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == found.id).order_by(WebhookAttempt.id))
        .all()
    )
    return DeliveryDetailSchema().dump(found) | {"attempt_log": AttemptSchema(many=True).dump(attempts)}


@blp.route("/webhooks/<int:subscription_id>/deliveries/<int:delivery_id>/replay", methods=["POST"])
@blp.operation("webhooks.manage", ReplayedSchema, status=202)
def replay_delivery(subscription_id, delivery_id):
    """Send one delivery again (its payload built anew with the owner's current rights)."""
    hooks_commands.replay_delivery(context(), subscription_id, delivery_id)
    return {"replayed": 1}


@blp.route("/webhooks/<int:subscription_id>/replay", methods=["POST"])
@blp.operation("webhooks.manage", ReplayedSchema, status=202, body=ReplaySchema)
def replay_since(data, subscription_id):
    """Send again every event since a time that this subscription wants (at most 10,000)."""
    return {"replayed": hooks_commands.replay_since(context(), subscription_id, data["since"])}


# --- the change feed -----------------------------------------------------------------------------


@blp.route("/events", methods=["GET"])
@blp.read(AUTHENTICATED, FeedPageSchema, query=FeedArgs, query_kwargs=False)
def change_feed(args):
    """Every domain event (the same ids as webhook payloads, deletions included) that I may see,
    oldest first; resume with ``after=<next_cursor>``. Events are kept ``retention_days``."""
    identity = current_identity()
    hooks = hook_settings()
    # Positions are taken when an event is inserted, and concurrent intakes may commit out of that
    # order: an event becomes listed once it is FEED_SETTLE old, so a cursor never passes one that
    # is about to appear behind it.
    statement = select(FeedEvent).where(FeedEvent.received_at <= utcnow() - FEED_SETTLE).order_by(FeedEvent.position)
    if args["after"]:
        statement = statement.where(FeedEvent.position > int(args["after"]))
    if args["types"]:
        statement = statement.where(FeedEvent.type.in_({t.strip() for t in args["types"].split(",") if t.strip()}))
    statement, location_id = webhooks.readable_events(statement, identity)
    rows = db_session().execute(statement.add_columns(location_id).limit(args["limit"])).all()
    items = [
        {
            "id": row.event_id,
            "type": row.type,
            "occurred_at": row.occurred_at,
            "data": webhooks.readable_data(row.data, identity, where),
            "cursor": str(row.position),
        }
        for row, where in rows
    ]
    next_cursor = str(rows[-1][0].position) if rows else args["after"]
    return {"items": items, "next_cursor": next_cursor, "retention_days": hooks.feed_retention_days}
