"""Request and response shapes of the property API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import page_schema


class PropertySchema(Schema):
    id = fields.Integer(dump_only=True)
    customer_id = fields.Integer(dump_only=True)
    account_number = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    created_at = Timestamp(dump_only=True)
    updated_at = Timestamp(dump_only=True)


class PropertyCreateSchema(Schema):
    account_number = TrimmedString(allow_none=True, validate=validate.Length(min=1, max=40),
                                   metadata={"description": "Monitoring account number, unique"})
    address = TrimmedString(allow_none=True, validate=validate.Length(max=200))
    city = TrimmedString(allow_none=True, validate=validate.Length(max=100))
    postal_code = TrimmedString(allow_none=True, validate=validate.Length(max=20))


PropertyPageSchema = page_schema(PropertySchema, "PropertyPage")
