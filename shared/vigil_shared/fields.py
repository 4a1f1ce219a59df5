"""Marshmallow fields shared by every service's schemas."""
from __future__ import annotations

from datetime import UTC

from marshmallow import fields


class TrimmedString(fields.String):
    """A string with surrounding white space removed; an empty result counts as missing text."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip() if isinstance(result, str) else result


class Timestamp(fields.AwareDateTime):
    """A moment in UTC written as every Vigil response writes it: ``2026-11-22T14:03:00Z``."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
