"""Which service owns which public path. First match wins, so the narrower rules come first.

Paths the gateway answers itself (auth, users, roles, locations, API keys, audit, aggregates such
as the customer summary and the technician lookup) are Flask routes and never reach this table.
"""

from __future__ import annotations

import re

from vigil_shared.config import SERVICES


def _rule(pattern: str, service: str) -> tuple[re.Pattern, str]:
    return re.compile(f"^/api/v1/{pattern}(/.*)?$"), service


ROUTES: list[tuple[re.Pattern, str]] = [
    # property-owned resources hanging under a customer
    _rule(r"customers/[^/]+/(properties|appointments)", "property"),
    # billing-owned resources hanging under a customer (its account, rate, invoices, payments…)
    _rule(
        r"customers/[^/]+/(billing|rate|invoices|payments|billing-methods|recurring-invoices|scheduled-payments"
        r"|transactions|statements)",
        "billing",
    ),
    _rule("customers", "customer"),
    _rule("(tags|custom-fields)", "customer"),
    _rule("(properties|appointments|system-kinds)", "property"),
    _rule(
        "(billing|rates|invoices|payments|billing-methods|recurring-invoices|scheduled-payments|ar-aging)", "billing"
    ),
    *[_rule(f"ops/{name}", name) for name in SERVICES],
    _rule("leads", "customer"),
]


def service_for(path: str) -> str | None:
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None
