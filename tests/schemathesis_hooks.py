"""Schemathesis hooks for tests/test_e2e_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

The caller signs in as the stack's admin and signs in again whenever a call answers 401, so a
fuzzed ``POST /auth/logout`` or password change does not blind the rest of the run. With
``VIGIL_FUZZ_API_KEY`` set, the caller is that API key instead.
"""

from __future__ import annotations

import os

import requests
import schemathesis


@schemathesis.auth(refresh_interval=600)  # cached; fetched again after any 401 (schemathesis' retry_on)
class VigilCaller:
    def get(self, case, ctx):
        key = os.environ.get("VIGIL_FUZZ_API_KEY")
        if key:
            return {"X-API-Key": key}
        response = requests.post(
            f"{os.environ['VIGIL_FUZZ_GATEWAY']}/api/v1/auth/token",
            timeout=30,
            json={"username": "admin", "password": os.environ["VIGIL_FUZZ_PASSWORD"]},
        )
        if response.status_code != 200:
            return {}  # the admin was locked out or changed by a fuzzed call: the rest runs unauthenticated
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def set(self, case, data, ctx):
        case.headers = dict(case.headers or {})
        for name in ("Authorization", "X-API-Key"):  # the chosen caller, not a generated credential
            case.headers.pop(name, None)
        case.headers.update(data)
