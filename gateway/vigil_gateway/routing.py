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
    # credit-owned resources hanging under a customer (its Credit tab, the ADT PreCheck)
    _rule(r"customers/[^/]+/(credit-checks|precheck)", "credit"),
    # billing-owned resources hanging under a customer (its account, rate, invoices, payments…)
    _rule(
        r"customers/[^/]+/(billing|rate|invoices|payments|billing-methods|recurring-invoices|scheduled-payments"
        r"|transactions|statements)",
        "billing",
    ),
    _rule("customers", "customer"),
    _rule("(tags|custom-fields|monitoring-companies)", "customer"),
    _rule("(properties|appointments|system-kinds)", "property"),
    _rule("monitoring", "property"),
    _rule("(credit-checks|credit-settings)", "credit"),
    _rule(
        "(billing|rates|invoices|payments|billing-methods|recurring-invoices|scheduled-payments|ar-aging)", "billing"
    ),
    *[_rule(f"ops/{name}", name) for name in SERVICES],
    # each archive participant's part of the archive preview
    *[_rule(f"archive-items/{name}", name) for name in SERVICES],
    # an operation's id names the service that runs it (vigil_shared.operations); the list is the gateway's
    *[_rule(f"operations/{name}-[0-9a-f]{{32}}", name) for name in SERVICES],
    _rule("leads", "customer"),
]


def service_for(path: str) -> str | None:
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None
