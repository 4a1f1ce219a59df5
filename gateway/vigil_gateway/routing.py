"""Which service owns which public path. First match wins, so the narrower rules come first."""
from __future__ import annotations

import re

from vigil_shared.config import SERVICES

ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^/api/v1/customers/[^/]+/properties(/.*)?$"), "property"),
    (re.compile(r"^/api/v1/customers(/.*)?$"), "customer"),
    (re.compile(r"^/api/v1/properties(/.*)?$"), "property"),
    *[(re.compile(rf"^/api/v1/ops/{name}(/.*)?$"), name) for name in SERVICES],
]


def service_for(path: str) -> str | None:
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None
