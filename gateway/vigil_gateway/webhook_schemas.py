"""Request and response shapes of webhooks and the change feed (see docs/integrations.md)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from vigil_shared.alike import alike
from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema

from .webhooks import EVENT_TYPES

EVENT_TYPE_LIST = ", ".join(sorted(EVENT_TYPES))


def _known_types(values: list[str] | None) -> None:
    if values is None:
        return
    unknown = sorted(set(values) - EVENT_TYPES)
    if unknown:
        raise ValidationError(f"Unknown event types: {', '.join(unknown)}. Known: {EVENT_TYPE_LIST}.")
    if len(set(values)) != len(values):
        raise ValidationError("Each event type once.")


def _event_type() -> fields.String:
    """One event type; the OpenAPI document lists them (an unknown one is a 422 naming the known ones)."""
    return fields.String(metadata={"enum": sorted(EVENT_TYPES)})


URL = validate.And(
    validate.URL(schemes={"http", "https"}, require_tld=False, error="An http or https URL."),
    validate.Length(max=2000),
)


class SubscriptionSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.String()
    event_types = fields.List(
        _event_type(), allow_none=True, metadata={"description": f"null: every type. Known: {EVENT_TYPE_LIST}"}
    )
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    owner_user_id, owner_key_id = alike(2, fields.Integer, allow_none=True)
    failing_since = Timestamp(
        allow_none=True, metadata={"description": "Deliveries have failed continuously since then"}
    )
    disabled_reason = fields.String(
        allow_none=True, metadata={"description": "Why Vigil disabled the subscription (410 Gone, failing for days)"}
    )
    disabled_at = Timestamp(allow_none=True)
    previous_secret_until = Timestamp(
        allow_none=True, metadata={"description": "The secret before the last rotation signs too until then"}
    )
    created_at, updated_at = alike(2, Timestamp)


SubscriptionPageSchema = page_schema(SubscriptionSchema, "WebhookSubscriptionPage")


class SubscriptionCreatedSchema(SubscriptionSchema):
    secret = fields.String(
        attribute="plaintext_secret",
        metadata={"description": "The signing secret (whsec_…): shown this once, never again"},
    )


class SubscriptionCreateSchema(Schema):
    url = fields.String(required=True, validate=URL)
    event_types = fields.List(
        _event_type(),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=100),
        metadata={"description": f"null: every type. Known: {EVENT_TYPE_LIST}"},
    )
    description = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=500))
    enabled = fields.Boolean(load_default=True)

    @validates("event_types")
    def _types(self, value, **_):
        _known_types(value)


class SubscriptionPatchSchema(Schema):
    url = fields.String(validate=URL)
    event_types = fields.List(
        _event_type(),
        allow_none=True,
        validate=validate.Length(max=100),
        metadata={"description": f"null: every type. Known: {EVENT_TYPE_LIST}"},
    )
    description = TrimmedString(allow_none=True, validate=validate.Length(max=500))
    enabled = fields.Boolean()

    @validates("event_types")
    def _types(self, value, **_):
        _known_types(value)


class RotateSecretSchema(Schema):
    overlap_seconds = fields.Integer(
        load_default=24 * 3600,
        validate=validate.Range(min=0, max=7 * 24 * 3600),
        metadata={"description": "How long the old secret keeps signing beside the new one"},
    )


class RotatedSecretSchema(Schema):
    secret = fields.String(metadata={"description": "The new signing secret: shown this once"})
    previous_secret_until = Timestamp(allow_none=True)


class AttemptSchema(Schema):
    at = Timestamp()
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Integer()
    response_excerpt = fields.String(allow_none=True, metadata={"description": "The first bytes of the answer"})
    error = fields.String(allow_none=True)


class DeliverySchema(Schema):
    id, subscription_id = alike(2, fields.Integer)
    event_id = fields.String(metadata={"description": "The event's id: the webhook-id header and the payload's id"})
    event_type = fields.String()
    status = fields.String(metadata={"description": "pending, succeeded, failed, skipped or cancelled"})
    attempts = fields.Integer()
    next_attempt_at = Timestamp(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    created_at, updated_at = alike(2, Timestamp)


class DeliveryDetailSchema(DeliverySchema):
    attempt_log = fields.List(fields.Nested(AttemptSchema))


DeliveryPageSchema = page_schema(DeliverySchema, "WebhookDeliveryPage")


class DeliveryArgs(PaginationArgs):
    status = fields.String(validate=validate.OneOf(["pending", "succeeded", "failed", "skipped", "cancelled"]))


class ReplaySchema(Schema):
    since = Timestamp(required=True, metadata={"description": "Every event received since then"})


class ReplayedSchema(Schema):
    replayed = fields.Integer(metadata={"description": "How many deliveries were queued again"})


class FeedArgs(Schema):
    after = fields.String(
        load_default=None, validate=validate.Regexp(r"^[0-9]{1,18}$"), metadata={"description": "A cursor"}
    )
    types = fields.String(
        load_default=None,
        validate=validate.Length(max=2000),
        metadata={"description": "Comma-separated event types (default: all)"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))

    @validates("types")
    def _types(self, value, **_):
        if value:
            _known_types(sorted({t.strip() for t in value.split(",") if t.strip()}))


class FeedEventSchema(Schema):
    id = fields.String(metadata={"description": "The event id, the same as in webhook payloads"})
    type = fields.String()
    timestamp = Timestamp(attribute="occurred_at")
    data = fields.Dict()
    cursor = fields.String(metadata={"description": "Resume after this event with ?after="})


class FeedPageSchema(Schema):
    items = fields.List(fields.Nested(FeedEventSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as ?after= for what follows"})
    retention_days = fields.Integer(metadata={"description": "Events older than this are no longer listed"})


# --- integrations: central stations posting to Vigil ---------------------------------------------


MONITORING_COMPANY = (
    "The monitoring company (`/monitoring-companies`) whose central station this is. The station's messages "
    "reach only the properties it monitors: those linked to it, and those linked to no station yet whose "
    "customer's Monitored By is this company (the first message links them). Null: only linked properties."
)
COMPANY_ID = validate.Range(min=1, max=2**31 - 1)


class IntegrationSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(metadata={"description": "The central station, as signals record it"})
    rate_limit_per_minute = fields.Integer()
    enabled = fields.Boolean()
    accounts_url = fields.String(allow_none=True, metadata={"description": "The station's account list (drift checks)"})
    monitoring_company_id = fields.Integer(allow_none=True, metadata={"description": MONITORING_COMPANY})
    previous_secret_until = Timestamp(allow_none=True)
    created_at, updated_at = alike(2, Timestamp)


IntegrationPageSchema = page_schema(IntegrationSchema, "IntegrationPage")


class IntegrationCreatedSchema(IntegrationSchema):
    secret = fields.String(
        attribute="plaintext_secret", metadata={"description": "The signing secret (whsec_…): shown this once"}
    )


class IntegrationCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    rate_limit_per_minute = fields.Integer(load_default=6000, validate=validate.Range(min=1, max=1_000_000))
    enabled = fields.Boolean(load_default=True)
    accounts_url = fields.String(allow_none=True, load_default=None, validate=URL)
    monitoring_company_id = fields.Integer(
        allow_none=True, load_default=None, validate=COMPANY_ID, metadata={"description": MONITORING_COMPANY}
    )


class IntegrationPatchSchema(Schema):
    name = TrimmedString(validate=validate.Length(min=1, max=120))
    rate_limit_per_minute = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    enabled = fields.Boolean()
    accounts_url = fields.String(allow_none=True, validate=URL)
    monitoring_company_id = fields.Integer(allow_none=True, validate=COMPANY_ID)


SIGNAL_TYPES = ("alarm", "trouble", "restore", "test", "open", "close")
ACCOUNT_STATUSES = ("active", "suspended", "cancelled", "in_test")


class IncomingSignalSchema(Schema):
    account_number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))
    type = fields.String(required=True, validate=validate.OneOf(SIGNAL_TYPES))
    zone = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=40))
    user = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=40))
    description = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=300))
    occurred_at = Timestamp(allow_none=True, load_default=None)


class IncomingStatusSchema(Schema):
    account_number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))
    status = fields.String(required=True, validate=validate.OneOf(ACCOUNT_STATUSES))
    occurred_at = Timestamp(allow_none=True, load_default=None)


class IncomingReceiptSchema(Schema):
    status = fields.String(metadata={"description": "received"})
    matched = fields.Boolean(metadata={"description": "Whether a property has this account number"})


class DriftSchema(Schema):
    checked_at = Timestamp(allow_none=True, attribute="drift_checked_at")
    requested_at = Timestamp(allow_none=True, attribute="drift_requested_at")
    error = fields.String(allow_none=True, attribute="drift_error")
    report = fields.Dict(
        allow_none=True,
        attribute="drift_report",
        metadata={"description": "missing_in_vigil, missing_at_station, status_mismatch, address_mismatch"},
    )
