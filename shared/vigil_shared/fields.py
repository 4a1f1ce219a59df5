"""Marshmallow fields shared by every service's schemas."""
from __future__ import annotations

from marshmallow import fields


class TrimmedString(fields.String):
    """A string with surrounding white space removed; an empty result counts as missing text."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip() if isinstance(result, str) else result
