"""Every moment the credit service answers is written as the conventions write it: ``2026-11-22T14:03:00Z``."""

import re

from test_credit_checks import FakeBureau, pull
from test_prechecks import FakeAdt

from vigil_credit import tasks

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def moments(body: dict) -> dict:
    return {name: value for name, value in body.items() if name.endswith("_at") and value is not None}


def test_credit_checks_and_prechecks_write_their_moments_with_z(api, runtime, customers):
    check_id = api.post("/api/v1/customers/7/credit-checks", json={"bureau": "equifax"}).json["id"]
    pull(runtime, customers, check_id, FakeBureau())
    applied = api.post(f"/api/v1/credit-checks/{check_id}/apply").json
    listed = api.get("/api/v1/customers/7/credit-checks").json["items"][0]
    precheck = api.post("/api/v1/customers/7/precheck").json
    tasks.run_precheck(runtime, precheck["id"], None, FakeAdt(), customers.subject)
    shown = api.get("/api/v1/customers/7/precheck").json["latest"]
    assert set(moments(applied)) == {"applied_at", "created_at", "run_at"}
    assert set(moments(shown)) == {"created_at", "completed_at"}
    for body in (applied, listed, precheck, shown):
        for name, value in moments(body).items():
            assert UTC_Z.match(value), (name, value)
