"""Bad input against the real stack (gunicorn processes, PostgreSQL or SQLite), through the gateway.

Every answer here is problem+json with the right status — never a 500, an HTML page, a truncated
body passed on, or a "service unavailable" for what is the caller's mistake. The rules live once in
the shared request layer (vigil_shared.guards, errors, gunicorn_worker); these tests prove that
every route, in every process, has them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import assert_problem, customer_body

from vigil_runner.stack import BIN, free_port

HUGE = "9" * 30
INT32_OVER = str(2**31)
NUL = "\x00"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def customer(gateway, locations) -> dict:
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], last_name=unique("Robust")),
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def prop(gateway, customer) -> dict:
    response = gateway.post(
        f"/api/v1/customers/{customer['id']}/properties",
        json={"account_number": unique("ROB"), "address": "1 Steady Road", "pin": "1357"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def nosniff(response) -> None:
    assert response.headers.get("X-Content-Type-Options") == "nosniff", (response.status_code, response.headers)


# --- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [INT32_OVER, str(2**63), HUGE, "-1"])
def test_path_ids_out_of_range_are_404_everywhere(gateway, raw):
    for method, path in (
        ("GET", f"/api/v1/customers/{raw}"),
        ("PATCH", f"/api/v1/customers/{raw}"),
        ("DELETE", f"/api/v1/customers/{raw}"),
        ("GET", f"/api/v1/customers/{raw}/history"),
        ("GET", f"/api/v1/customers/{raw}/contacts"),
        ("GET", f"/api/v1/customers/{raw}/properties"),
        ("GET", f"/api/v1/properties/{raw}"),
        ("PATCH", f"/api/v1/properties/{raw}"),
        ("GET", f"/api/v1/appointments/{raw}"),
        ("GET", f"/api/v1/system-kinds/{raw}"),
        ("GET", f"/api/v1/users/{raw}"),
        ("PATCH", f"/api/v1/roles/{raw}"),
        ("GET", f"/api/v1/locations/{raw}"),
        ("DELETE", f"/api/v1/api-keys/{raw}"),
    ):
        kwargs = {"json": {"notes": "x"}} if method == "PATCH" else {}
        body = assert_problem(gateway.request(method, path, **kwargs), 404)
        assert "unavailable" not in body["detail"].lower(), (path, body)


def test_the_summary_of_a_huge_id_is_not_found_not_services_unavailable(gateway):
    for raw in (INT32_OVER, HUGE):
        response = gateway.get(f"/api/v1/customers/{raw}/summary")
        assert_problem(response, 404)
        nosniff(response)


def test_id_fields_out_of_range_in_bodies_and_filters_are_422(gateway, locations, customer, prop):
    for raw in (INT32_OVER, HUGE):
        value = int(raw)
        errors = assert_problem(gateway.post("/api/v1/customers", json=customer_body(value)), 422)["errors"]
        assert "location_id" in errors
        errors = assert_problem(
            gateway.post(
                "/api/v1/users",
                json={
                    "username": unique("u"),
                    "password": "a long enough password 1",
                    "grants": [{"role_id": value, "location_id": None}],
                },
            ),
            422,
        )["errors"]
        assert any(key.startswith("grants") for key in errors), errors
        errors = assert_problem(
            gateway.post(f"/api/v1/properties/{prop['id']}/transfer", json={"to_customer_id": value}), 422
        )["errors"]
        assert "to_customer_id" in errors
        assert (
            "customer_id"
            in assert_problem(gateway.get("/api/v1/properties", params={"customer_id": raw}), 422)["errors"]
        )
        errors = assert_problem(gateway.get("/api/v1/customers", params={"location_id": raw}), 422)["errors"]
        assert any(key.startswith("location_id") for key in errors), errors
        assert_problem(gateway.get("/api/v1/customers", params={"page": raw}), 422)


# --- text --------------------------------------------------------------------------------------


def test_nul_and_control_characters_are_422_in_bodies_queries_and_sign_in(gateway, anonymous, locations, customer):
    errors = assert_problem(
        gateway.post("/api/v1/customers", json=customer_body(locations["home"], first_name=f"Da{NUL}na")), 422
    )["errors"]
    assert "first_name" in errors
    assert_problem(gateway.patch(f"/api/v1/customers/{customer['id']}", json={"last_name": "Bell\x07"}), 422)
    assert_problem(gateway.post(f"/api/v1/customers/{customer['id']}/notes", json={"text": f"x{NUL}"}), 422)
    assert_problem(gateway.get("/api/v1/customers", params={"q": f"a{NUL}b"}), 422)
    assert_problem(gateway.get("/api/v1/properties", params={"account_number": NUL}), 422)
    assert_problem(gateway.get("/api/v1/audit", params={"actor": f"ad{NUL}min"}), 422)
    assert_problem(gateway.get("/api/v1/users", params={"q": NUL}), 422)
    assert_problem(gateway.post("/api/v1/roles", json={"name": f"r{NUL}", "permissions": []}), 422)
    errors = assert_problem(
        anonymous.post("/api/v1/auth/token", json={"username": f"adm{NUL}in", "password": "whatever"}), 422
    )["errors"]
    assert "username" in errors
    # gunicorn itself refuses a control character in a header as malformed HTTP: a problem+json 400
    # (the app's own check answers 422 behind servers that let it through)
    assert_problem(
        gateway.post(
            "/api/v1/customers", json=customer_body(locations["home"]), headers={"Idempotency-Key": "key\x01"}
        ),
        400,
    )
    assert_problem(gateway.get("/api/v1/ops/customer/inbox/abc%00def"), 404)
    multi_line = gateway.patch(f"/api/v1/customers/{customer['id']}", json={"notes": "line 1\n\tline 2"})
    assert multi_line.status_code == 200, multi_line.text


def test_technician_lookup_with_a_nul_account_number_is_422_not_503(gateway):
    body = assert_problem(
        gateway.post("/api/v1/tech/lookup", json={"account_number": f"ACC{NUL}1", "pin": "1234"}), 422
    )
    assert "account_number" in body["errors"]


# --- structure and size --------------------------------------------------------------------------


def test_json_nested_100000_deep_is_400(gateway, anonymous):
    deep = "[" * 100_000 + "]" * 100_000
    for caller, path in ((gateway, "/api/v1/customers"), (gateway, "/api/v1/roles"), (anonymous, "/api/v1/auth/token")):
        response = caller.post(path, data=deep, headers={"Content-Type": "application/json"})
        assert_problem(response, 400)


def _chunks(body: bytes, size: int = 64 * 1024):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_forwarded(gateway, locations):
    last_name = unique("Chunky")
    big = json.dumps(customer_body(locations["home"], last_name=last_name, notes="x" * 3_000_000)).encode()
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        data=_chunks(big),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert_problem(response, 413)
    found = gateway.get("/api/v1/customers", params={"q": last_name})
    assert found.status_code == 200 and found.json()["total"] == 0, found.text


def test_a_chunked_body_within_the_limit_is_forwarded_whole(gateway, locations):
    notes = "n" * 9_000
    body = json.dumps(customer_body(locations["home"], last_name=unique("Chunked"), notes=notes)).encode()
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        data=_chunks(body, 1024),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["notes"] == notes


def test_services_refuse_chunked_bodies_over_the_limit_too(stack):
    url = f"http://127.0.0.1:{stack.env['VIGIL_CUSTOMER_PORT']}/api/v1/customers"
    response = requests.post(
        url, data=_chunks(b"[" + b"1," * 1_500_000 + b"1]"), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_problem(response, 413)  # before identity: size is judged first, whoever sends it


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("process", ["gateway", "customer"])
def test_over_long_urls_and_headers_are_problem_json_from_gunicorn(stack, gateway, process):
    base = stack.gateway_url if process == "gateway" else f"http://127.0.0.1:{stack.env['VIGIL_CUSTOMER_PORT']}"
    long_url = requests.get(f"{base}/api/v1/customers?q={'a' * 20_000}", headers=gateway.http.headers, timeout=15)
    assert_problem(long_url, 414)
    nosniff(long_url)
    long_header = requests.get(
        f"{base}/api/v1/customers", headers={**gateway.http.headers, "X-Pad": "b" * 20_000}, timeout=15
    )
    assert_problem(long_header, 431)
    nosniff(long_header)
    port = int(base.rsplit(":", 1)[1])
    many_headers = "".join(f"X-H{i}: v\r\n" for i in range(150))
    raw = _raw_exchange(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431") and b"application/problem+json" in head, head
    assert json.loads(body)["status"] == 431
    raw = _raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/problem+json" in head, head
    assert json.loads(body)["status"] == 400


# --- methods -----------------------------------------------------------------------------------


def _allow(response) -> set[str]:
    return {method.strip() for method in response.headers.get("Allow", "").split(",") if method.strip()}


def test_unsupported_methods_are_405_with_the_real_allow(gateway, customer, prop):
    response = gateway.request("PUT", f"/api/v1/customers/{customer['id']}", json={"first_name": "X"})
    assert_problem(response, 405)
    assert {"GET", "PATCH", "DELETE"} <= _allow(response) and not _allow(response) & {"PUT", "POST"}
    response = gateway.request("PUT", f"/api/v1/properties/{prop['id']}", json={})
    assert_problem(response, 405)
    assert "PUT" not in _allow(response) and "PATCH" in _allow(response)
    users = gateway.get("/api/v1/users").json()["items"]
    response = gateway.request("PUT", f"/api/v1/users/{users[0]['id']}", json={})
    assert_problem(response, 405)
    assert "PUT" not in _allow(response) and {"GET", "PATCH"} <= _allow(response)
    options = gateway.request("OPTIONS", f"/api/v1/customers/{customer['id']}")
    assert options.status_code == 200 and "PATCH" in _allow(options) and not _allow(options) & {"PUT", "POST"}
    response = gateway.request("POST", "/api/v1/customers/1/history", json={})
    assert_problem(response, 405)
    assert _allow(response) & {"POST", "PUT", "PATCH", "DELETE"} == set()


def test_patch_without_a_body_is_refused_and_changes_nothing(gateway, customer):
    before = gateway.get(f"/api/v1/customers/{customer['id']}")
    response = gateway.patch(f"/api/v1/customers/{customer['id']}")
    assert_problem(response, 400)
    response = gateway.patch(f"/api/v1/customers/{customer['id']}", headers={"Content-Type": "application/json"})
    assert_problem(response, 400)
    assert_problem(gateway.post("/api/v1/roles"), 400)
    after = gateway.get(f"/api/v1/customers/{customer['id']}")
    assert after.headers["ETag"] == before.headers["ETag"]


# --- headers and conflicts ---------------------------------------------------------------------------


def test_every_response_carries_nosniff(stack, gateway, anonymous, customer):
    responses = [
        gateway.get(f"/api/v1/customers/{customer['id']}"),
        gateway.get("/api/v1/customers/0"),
        gateway.get("/api/v1/nowhere"),
        anonymous.get("/api/v1/customers"),
        gateway.post("/api/v1/customers", json={}),
        anonymous.get("/healthz"),
        anonymous.get("/readyz"),
        gateway.get("/api/v1/openapi.json"),
        gateway.get("/api/v1/docs"),
        requests.get(f"http://127.0.0.1:{stack.env['VIGIL_PROPERTY_PORT']}/api/v1/properties", timeout=10),
        requests.get(f"http://127.0.0.1:{stack.env['VIGIL_CUSTOMER_WORKER_HEALTH_PORT']}/readyz", timeout=10),
    ]
    assert [r.status_code for r in responses] == [200, 404, 404, 401, 422, 200, 200, 200, 200, 401, 200]
    for response in responses:
        nosniff(response)


def test_concurrent_patches_of_one_customer_never_500(gateway, locations):
    created = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], last_name=unique("Racer")),
    ).json()

    def patch(index: int) -> int:
        caller = requests.Session()
        caller.headers.update(gateway.http.headers)
        return caller.patch(
            gateway.url(f"/api/v1/customers/{created['id']}"), json={"notes": f"writer {index}"}, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(patch, range(16)))
    assert set(statuses) <= {200, 409}, statuses
    assert 200 in statuses


# --- readiness -----------------------------------------------------------------------------------


def _serve_with_a_dead_broker(stack, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(
        stack.env, VIGIL_BROKER_URL="amqp://guest:guest@127.0.0.1:9//", **{f"VIGIL_{name.upper()}_PORT": str(port)}
    )
    env.pop("VIGIL_QUEUE_PREFIX", None)
    process = subprocess.Popen(
        [str(BIN / f"vigil-{name}"), "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process, port
        except requests.ConnectionError:
            pass
        assert process.poll() is None, f"vigil-{name} web exited with {process.returncode}"
        time.sleep(0.1)  # polling a process that is starting: there is no event to await
    process.kill()
    raise AssertionError(f"vigil-{name} web did not start")


@pytest.mark.parametrize("name", ["gateway", "customer"])
def test_web_processes_stay_ready_while_the_broker_is_down(stack, name):
    process, port = _serve_with_a_dead_broker(stack, name)
    try:
        response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=15)
        assert response.status_code == 200, response.text
        body = response.json()
        # a web process's events go to its own outbox, so the broker is the relay's check, not its own
        assert body["status"] == "ready" and set(body["checks"]) == {"database"}
        assert body["checks"]["database"]["status"] == "ok"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
