"""Fields of a schema that are all alike, declared on one line.

``managed_by, name, phone = alike(3, fields.String, allow_none=True)`` in a marshmallow schema is the
same as three ``fields.String(allow_none=True)`` lines: each name gets a field of its own, created in
the order written, so the schema's field order (and its OpenAPI document) is what the lines gave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["alike"]

Field = TypeVar("Field")


def alike(count: int, make: Callable[..., Field], *args: Any, **options: Any) -> list[Field]:
    """``count`` fields ``make(*args, **options)``, one per name they are unpacked into."""
    return [make(*args, **options) for _ in range(count)]
