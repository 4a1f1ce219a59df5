"""Schemathesis over the merged OpenAPI: no input gets a 5xx, and every response matches its declaration.

It runs on the embedded default and, when the suite runs there, on PostgreSQL + RabbitMQ too.
Each run gets a stack of its own (it signs in wrongly on purpose, which engages the per-address
sign-in limit, and edits users and roles), and fuzzes every operation twice: as an administrator
with a bearer token, and with an API key holding every permission. It is bounded (a few examples
per operation, a time budget per run, two workers) so ``make test`` stays within minutes.

Checks: ``not_a_server_error`` (any 5xx fails), ``response_schema_conformance`` and
``content_type_conformance`` (bodies and media types as declared, errors as problem+json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import EVERY_BACKEND, running_stack

BIN = Path(sys.executable).parent
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")  # the caller: admin (signs in again on 401) or a key
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
MAX_EXAMPLES = int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "6"))
MAX_SECONDS = int(os.environ.get("VIGIL_FUZZ_SECONDS", "80"))  # per main run; the last run gets half
# Operations that can end the caller's own access (deactivate user 1, change its password or roles,
# revoke its key). They are fuzzed last, in a run of their own, so they cannot blind the main runs.
SELF_SABOTAGE = (
    "POST /api/v1/auth/logout",
    "POST /api/v1/me/password",
    "POST /api/v1/users/{user_id}/password",
    "PATCH /api/v1/users/{user_id}",
    "PATCH /api/v1/roles/{role_id}",
    "DELETE /api/v1/roles/{role_id}",
    "DELETE /api/v1/api-keys/{key_id}",
)

pytestmark = pytest.mark.run_last(1)


@pytest.fixture(scope="module", params=EVERY_BACKEND)
def fuzz_stack(request, tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp(f"fuzz-{request.param}"), backend=request.param) as running:
        yield running


def _sign_in(stack) -> str:
    response = requests.post(
        f"{stack.gateway_url}/api/v1/auth/token",
        timeout=15,
        json={"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]},
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _api_key(stack, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    permissions = requests.get(f"{stack.gateway_url}/api/v1/permissions", headers=headers, timeout=15)
    assert permissions.status_code == 200, permissions.text
    names = [p["name"] if isinstance(p, dict) else p for p in _items(permissions.json())]
    created = requests.post(
        f"{stack.gateway_url}/api/v1/api-keys",
        headers=headers,
        timeout=15,
        json={"name": "schemathesis", "permissions": names},
    )
    assert created.status_code == 201, created.text
    return created.json()["key"]


def _items(body):
    return body["items"] if isinstance(body, dict) and "items" in body else body


def _run(
    stack,
    tmp_path: Path,
    label: str,
    api_key: str | None = None,
    *,
    only: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    seconds: int = MAX_SECONDS,
) -> dict:
    report = tmp_path / f"{label}.ndjson"
    config = tmp_path / "schemathesis.toml"
    config.write_text("[auth]\nauto-signup = false\n")  # the callers are given; no sign-up is attempted
    argv = [
        str(BIN / "st"),
        "--config-file",
        str(config),
        "run",
        f"{stack.gateway_url}/api/v1/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(seconds),
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-shrink",
        "--seed",
        "8",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    for name in only:
        argv += ["--include-name", name]
    for name in exclude:
        argv += ["--exclude-name", name]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds * 3 + 120,
        cwd=tmp_path,  # its cache
        env=os.environ
        | {
            "NO_COLOR": "1",
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "VIGIL_FUZZ_GATEWAY": stack.gateway_url,
            "VIGIL_FUZZ_PASSWORD": stack.env["VIGIL_ADMIN_PASSWORD"],
            "VIGIL_FUZZ_API_KEY": api_key or "",
        },
    )
    return {"label": label, "code": done.returncode, "output": done.stdout + done.stderr, "failures": _failures(report)}


def _failures(report: Path) -> list[str]:
    """One line per distinct failure: operation | check | status | input class, for routing."""
    found: set[str] = set()
    if not report.exists():
        return []
    for line in report.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        scenario = event.get("ScenarioFinished") if isinstance(event, dict) else None
        if not scenario or scenario.get("status") != "failure":
            if isinstance(event, dict) and "NonFatalError" in event:
                found.add(f"error | {str(event['NonFatalError'].get('info', event['NonFatalError']))[:300]}")
            continue
        recorder = scenario["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check.get("status") != "failure":
                    continue
                failure = (check.get("failure_info") or {}).get("failure", {})
                response = (recorder.get("interactions", {}).get(case_id) or {}).get("response") or {}
                case = (recorder.get("cases", {}).get(case_id) or {}).get("value", {})
                found.add(
                    f"{recorder['label']} | {failure.get('title') or check['name']} | "
                    f"status {response.get('status_code')} | {input_class(case)}"
                )
    return sorted(found)


def input_class(case: dict) -> str:
    """What kind of input it was: the classes the request layer handles once for every route."""
    values = [case.get(part) for part in ("path_parameters", "query", "headers", "cookies", "body")]
    classes = set()

    def walk(node, depth=0):
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, int) and abs(node) > 2**31 - 1:
            classes.add("integer beyond 32 bits")
        elif isinstance(node, float) and node != node or node in (float("inf"), float("-inf")):
            classes.add("non-finite number")
        elif isinstance(node, str):
            if "\x00" in node:
                classes.add("NUL character")
            elif any(ord(ch) < 32 and ch not in "\t\n\r" for ch in node):
                classes.add("control character")
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in node):
                classes.add("lone surrogate")
        elif isinstance(node, dict):
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    for value in values:
        walk(value)
    description = ((case.get("meta") or {}).get("phase") or {}).get("data", {}).get("description", "")
    if not classes:
        classes.add(description or "valid-looking input")
    return ", ".join(sorted(classes))


def test_fuzz_the_merged_openapi(fuzz_stack, tmp_path):
    key = _api_key(fuzz_stack, _sign_in(fuzz_stack))
    runs = [
        _run(fuzz_stack, tmp_path, "admin-token", exclude=SELF_SABOTAGE),
        _run(fuzz_stack, tmp_path, "api-key", key, exclude=SELF_SABOTAGE),
        _run(
            fuzz_stack, tmp_path, "own-access", only=SELF_SABOTAGE, seconds=max(MAX_SECONDS // 2, 10)
        ),  # last: may lock the admin out
    ]
    problems = []
    for run in runs:
        failures = [line for line in run["failures"] if not line.startswith("error |")]
        tool_errors = [line for line in run["failures"] if line.startswith("error |")]
        for line in tool_errors:  # schemathesis' own errors (e.g. a generator crash): shown, not ours
            print(f"schemathesis ({run['label']}): {line}")
        if failures or (run["code"] != 0 and not tool_errors):
            summary = "\n".join(failures) or run["output"][-6000:]
            problems.append(f"--- {run['label']} (exit {run['code']}):\n{summary}")
    report = Path(tmp_path) / "failures.txt"
    report.write_text("\n\n".join(problems))
    assert not problems, f"schemathesis found failures (also in {report}):\n" + "\n".join(problems)
