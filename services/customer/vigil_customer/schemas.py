"""Request and response shapes of the customer API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema

NAME = validate.Length(min=1, max=100)


class CustomerSchema(Schema):
    id = fields.Integer(dump_only=True)
    first_name = fields.String()
    last_name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = Timestamp(dump_only=True)
    updated_at = Timestamp(dump_only=True)


class CustomerCreateSchema(Schema):
    first_name = TrimmedString(required=True, validate=NAME)
    last_name = TrimmedString(required=True, validate=NAME)
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    phone = TrimmedString(allow_none=True, validate=validate.Length(max=40))
    notes = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    active = fields.Boolean()


class CustomerPatchSchema(CustomerCreateSchema):
    first_name = TrimmedString(validate=NAME)
    last_name = TrimmedString(validate=NAME)


class CustomerListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(max=200), metadata={"description": "Matches name or email"})
    active = fields.Boolean()
    sort = fields.String(load_default="id", validate=validate.OneOf(
        ["id", "-id", "last_name", "-last_name", "created_at", "-created_at"]))


CustomerPageSchema = page_schema(CustomerSchema, "CustomerPage")
