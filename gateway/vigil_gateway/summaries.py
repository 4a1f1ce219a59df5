"""The customer record's header (``GET /api/v1/customers/{id}/summary``), combined from the services' answers.

Identity, metadata badges, status boxes and a count per tab, gathered from the services that own
them with the caller's own identity, so every part follows the caller's permissions: a tab the
caller may not view has no count (it is listed in ``hidden``). A service that does not answer
leaves its parts empty and the summary says so (``partial``, ``unavailable``) instead of failing.

Nothing here needs a request: the view passes how to ask the services (``fetch_all``, in parallel
with the caller's identity), so a script or a test calls the same function with any stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .upstream import ServiceUnavailable, refusal

IDENTITY_FIELDS = (
    "id",
    "kind",
    "first_name",
    "last_name",
    "business_name",
    "dba_name",
    "location_id",
    "city",
    "state",
    "active",
    "archived_at",
    "converted_at",
    "created_at",
    "created_by",
    "last_activity_at",
)
# tab → (service, path under the customer, query that makes `total` the tab's count)
TABS = {
    "notes": ("customer", "notes", {"open": "true"}),
    "contacts": ("customer", "contacts", {}),
    "files": ("customer", "files", {}),
    "tags": ("customer", "tags", {}),
    "properties": ("property", "properties", {}),
    "appointments": ("property", "appointments", {}),
    "accounting": ("billing", "invoices", {"status": "open"}),  # open invoices
}

FetchAll = Callable[[dict[str, tuple[str, str, dict]]], dict]  # name → (service, path, params) ⇒ name → Reply


def _billing_box(account_reply) -> dict | None:
    """Balance and past due from billing (shown only to a caller billing answered: `billing.view` there)."""
    body = account_reply.body if account_reply is not None and isinstance(account_reply.body, dict) else None
    if body is None or not isinstance(body.get("balance"), int):
        return None
    balance, past_due = body["balance"], body.get("past_due") or 0
    status = "past_due" if past_due > 0 else "balance_due" if balance > 0 else "credit" if balance < 0 else "paid_up"
    return {
        "category": "billing",
        "status": status,
        "balance": balance,
        "past_due": past_due,
        "currency": body.get("currency"),
    }


def _status_boxes(record: dict, properties_reply, account_reply=None) -> list[dict]:
    """One coloured box per category of the customer's current state (not for leads)."""
    if record.get("kind") != "customer":
        return []
    if record.get("archived_at"):
        account = "archived"
    elif record.get("canceled"):
        account = "canceled"
    else:
        account = "active" if record.get("active", True) else "inactive"
    boxes = [{"category": "account", "status": account}]
    items = (
        properties_reply.body.get("items")
        if properties_reply is not None and isinstance(properties_reply.body, dict)
        else None
    )
    if isinstance(items, list):
        statuses = {item.get("monitoring_status") for item in items if isinstance(item, dict)}
        monitoring = next((s for s in ("active", "suspended", "cancelled") if s in statuses), "none")
        boxes.append({"category": "monitoring", "status": monitoring})
    if "installed" in record:
        boxes.append({"category": "installation", "status": "installed" if record["installed"] else "not_installed"})
    if record.get("funding_status"):
        boxes.append({"category": "funding", "status": record["funding_status"]})
    billing = _billing_box(account_reply)
    if billing is not None:
        boxes.append(billing)
    return boxes


def customer_summary(customer_id: int, fetch_all: FetchAll) -> dict:
    """The summary of one record; 404 (also for a record outside the caller's rights) or 403 as the
    customer service answered them for the record itself."""
    base = f"/api/v1/customers/{customer_id}"
    calls: dict[str, tuple[str, str, dict]] = {"record": ("customer", base, {})}
    calls |= {
        tab: (service, f"{base}/{path}", {"per_page": 100 if tab == "properties" else 1, **params})
        for tab, (service, path, params) in TABS.items()
    }
    calls["family"] = ("customer", f"{base}/sub-customers", {})
    calls["precheck"] = ("credit", f"{base}/precheck", {})
    calls["billing_account"] = ("billing", f"{base}/billing", {})
    replies = fetch_all(calls)
    unavailable = sorted({exc.service for exc in replies.values() if isinstance(exc, ServiceUnavailable)})
    record_reply = replies["record"]
    record = None
    if not isinstance(record_reply, ServiceUnavailable):
        if not record_reply.ok:
            raise refusal(record_reply)
        record = record_reply.body
    counts: dict[str, Any]
    counts, hidden = {}, []
    for tab in TABS:
        reply = replies[tab]
        if isinstance(reply, ServiceUnavailable):
            counts[tab] = None
        elif reply.status in (401, 403) or (reply.status == 404 and record is not None):
            # a service answers 404 for a record outside the caller's rights there, like an unknown id
            # (vigil_shared.commands.refuse_on_record): the record was found, so the tab is hidden
            counts[tab] = None
            hidden.append(tab)
        elif reply.status == 404:
            counts[tab] = None
        else:
            counts[tab] = reply.body.get("total") if reply.ok and isinstance(reply.body, dict) else None
    properties_reply = (
        replies["properties"]
        if not isinstance(replies["properties"], ServiceUnavailable) and replies["properties"].ok
        else None
    )
    account = replies["billing_account"]
    account_reply = account if not isinstance(account, ServiceUnavailable) and account.ok else None
    summary: dict[str, Any] = {
        "customer": None,
        "sale": None,
        "installation": None,
        "status_boxes": [],
        "tags": None,
        "counts": counts,
        "hidden": hidden,
        "credit": None,
        "partial": bool(unavailable),
        "unavailable": unavailable,
        "family": None,
    }
    if record is not None:
        summary["customer"] = {key: record.get(key) for key in IDENTITY_FIELDS}
        if "sold_by" in record and record.get("kind") == "customer":
            summary["sale"] = {"sale_date": record.get("sale_date"), "sold_by": record.get("sold_by")}
        if "install_tech" in record and record.get("kind") == "customer":
            summary["installation"] = {
                "install_date": record.get("install_date"),
                "install_tech": record.get("install_tech"),
                "installed": record.get("installed", False),
            }
        summary["status_boxes"] = _status_boxes(record, properties_reply, account_reply)
        summary["tags"] = record.get("tags")
        summary["family"] = _family(replies.get("family"))
        summary["credit"] = _credit(record, replies["precheck"])
    return summary


def _family(reply) -> dict | None:
    """The parent/child indicator: "Sub-customer of {name}" or "{N} sub-customers" (seed 001)."""
    if reply is None or isinstance(reply, ServiceUnavailable) or not reply.ok or not isinstance(reply.body, dict):
        return None
    body = reply.body
    return {
        "header": body.get("header"),
        "parent": body.get("parent"),
        "sub_customers": [{"id": s["id"], "name": s["name"]} for s in body.get("items", [])],
    }


def _credit(record: dict, precheck_reply) -> dict | None:
    """The credit grade (as the caller may see the record) and the latest ADT PreCheck's status."""
    if record.get("kind") != "customer":
        return None
    latest = None
    if (
        not isinstance(precheck_reply, ServiceUnavailable)
        and precheck_reply.ok
        and isinstance(precheck_reply.body, dict)
    ):
        latest = precheck_reply.body.get("latest")
    return {
        "grade": record.get("credit_grade"),
        "precheck_status": latest.get("status") if isinstance(latest, dict) else None,
    }
