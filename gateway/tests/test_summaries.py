"""The customer summary is combined outside the view: a script or a test gives it any way to ask the services."""

import pytest
from flask import has_app_context

from vigil_gateway.summaries import TABS, customer_summary
from vigil_gateway.upstream import Reply, ServiceUnavailable
from vigil_shared.errors import Problem

RECORD = {
    "id": 5,
    "kind": "customer",
    "first_name": "Dana",
    "last_name": "Reyes",
    "location_id": 1,
    "active": True,
    "sold_by": "sam",
    "sale_date": "2026-01-02",
    "installed": True,
    "credit_grade": "B",
    "tags": [{"id": 1, "name": "VIP"}],
    "created_at": "2026-01-01T00:00:00Z",
    "last_activity_at": "2026-01-03T00:00:00Z",
}


def answers(**replies):
    asked = []

    def fetch_all(calls):
        asked.append(calls)
        return {name: replies.get(name, Reply(200, {"items": [], "total": 2})) for name in calls}

    return fetch_all, asked


def test_the_summary_combines_answers_without_any_flask_context():
    assert not has_app_context()
    fetch_all, asked = answers(
        record=Reply(200, RECORD),
        notes=Reply(403, {"detail": "no"}),
        appointments=ServiceUnavailable("property"),
        properties=Reply(200, {"items": [{"monitoring_status": "suspended"}], "total": 1}),
        precheck=Reply(200, {"latest": {"status": "approved"}, "history": []}),
        billing_account=Reply(200, {"balance": 4500, "past_due": 1500, "currency": "USD"}),
    )
    summary = customer_summary(5, fetch_all)
    assert summary["credit"] == {"grade": "B", "precheck_status": "approved"}
    assert set(asked[0]) == {"record", "family", "precheck", "billing_account", *TABS} and asked[0]["record"] == (
        "customer",
        "/api/v1/customers/5",
        {},
    )
    assert summary["customer"]["first_name"] == "Dana" and summary["sale"]["sold_by"] == "sam"
    assert summary["installation"] is None  # no installation section shown to this caller
    assert summary["counts"] == {
        "notes": None,
        "contacts": 2,
        "files": 2,
        "tags": 2,
        "properties": 1,
        "appointments": None,
        "accounting": 2,
    }
    assert summary["hidden"] == ["notes"] and summary["partial"] and summary["unavailable"] == ["property"]
    assert summary["status_boxes"] == [
        {"category": "account", "status": "active"},
        {"category": "monitoring", "status": "suspended"},
        {"category": "installation", "status": "installed"},
        {"category": "billing", "status": "past_due", "balance": 4500, "past_due": 1500, "currency": "USD"},
    ]


def test_no_billing_box_for_a_caller_billing_refuses():
    fetch_all, _ = answers(record=Reply(200, RECORD), billing_account=Reply(403, {"detail": "no"}))
    summary = customer_summary(5, fetch_all)
    assert "billing" not in [box["category"] for box in summary["status_boxes"]]


def test_a_refused_record_is_the_gateways_own_refusal():
    fetch_all, _ = answers(record=Reply(403, {"detail": "Not here.", "permission": "customers.view"}))
    with pytest.raises(Problem) as refused:
        customer_summary(5, fetch_all)
    assert refused.value.status == 403 and refused.value.extra.get("permission") == "customers.view"


def test_a_tab_answering_404_for_a_found_record_is_hidden():
    """A service answers 404 for a record outside the caller's rights there, exactly as for an unknown id:
    the record itself was found, so the tab is one the caller may not view, not a missing one."""
    fetch_all, _ = answers(record=Reply(200, RECORD), files=Reply(404, {"detail": "The customer does not exist."}))
    summary = customer_summary(5, fetch_all)
    assert summary["counts"]["files"] is None and summary["hidden"] == ["files"]


def test_a_tab_answering_404_while_the_record_s_service_is_down_is_not_called_hidden():
    fetch_all, _ = answers(record=ServiceUnavailable("customer"), appointments=Reply(404, {"detail": "no"}))
    summary = customer_summary(5, fetch_all)
    assert summary["counts"]["appointments"] is None and summary["hidden"] == []
    assert summary["unavailable"] == ["customer"]


def test_a_record_outside_the_caller_s_rights_is_the_gateway_s_own_404():
    hidden = {"type": "urn:vigil:problem:not-found", "detail": "The customer does not exist or is not visible to you."}
    fetch_all, _ = answers(record=Reply(404, hidden))
    with pytest.raises(Problem) as refused:
        customer_summary(5, fetch_all)
    assert refused.value.status == 404 and refused.value.detail == hidden["detail"] and not refused.value.extra
