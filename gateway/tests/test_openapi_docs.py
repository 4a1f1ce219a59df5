"""The docs page works offline, and the merged document declares errors as they are sent."""

import re

import pytest

from vigil_gateway.openapi import DOCS_ASSETS, HTTP_METHODS, PROBLEM_TYPE, merge_documents

ASSET_REF = re.compile(r'(?:href|src)="([^"]+)"')


def _page_assets(html: str) -> list[str]:
    return ASSET_REF.findall(html)


def test_docs_page_references_only_gateway_assets(client):
    """No CDN: every stylesheet, script and icon of the page is a relative path the gateway serves."""
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    refs = _page_assets(html)
    assert refs and all(not ref.startswith(("http:", "https:", "//")) for ref in refs), refs
    assert "<script>" not in html  # no inline script: the start-up code is a file as well
    assert {ref.rsplit("/", 1)[1] for ref in refs} == set(DOCS_ASSETS)


@pytest.mark.parametrize("name", sorted(DOCS_ASSETS))
def test_docs_assets_are_public_typed_and_nosniff(client, name):
    response = client.get(f"/api/v1/docs/{name}")  # no Authorization: the page loads before sign-in
    assert response.status_code == 200, response.get_data(as_text=True)[:200]
    expected = DOCS_ASSETS[name][1].split(";")[0]
    assert response.content_type.split(";")[0] == expected
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.get_data()) > 0


def test_swagger_ui_bundle_is_the_real_distribution(client):
    bundle = client.get("/api/v1/docs/swagger-ui-bundle.js").get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle and len(bundle) > 500_000
    start = client.get("/api/v1/docs/vigil-docs.js").get_data(as_text=True)
    assert 'url: "openapi.json"' in start and "validatorUrl: null" in start  # asks no outside validator


def test_unknown_docs_file_is_not_public(client, auth):
    assert client.get("/api/v1/docs/../app.py").status_code in (401, 404)
    assert client.get("/api/v1/docs/secret.txt").status_code == 401
    assert client.get("/api/v1/docs/secret.txt", headers=auth).status_code == 404


def test_merged_document_declares_errors_as_problem_json(client):
    doc = client.get("/api/v1/openapi.json").json
    checked = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if status == "default" or status[0] in "45":
                    response = _resolve(doc, response)
                    assert list(response["content"]) == [PROBLEM_TYPE], (path, method, status)
                    checked += 1
    assert checked > 10
    assert "additionalProperties" not in doc["components"]["schemas"]["Problem"]  # RFC 9457 extensions


def _resolve(doc, response):
    if "$ref" in response:
        return doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def test_merge_converts_service_error_declarations():
    problem = {"$ref": "#/components/schemas/Problem"}
    service = {
        "openapi": "3.1.0",
        "info": {"title": "s", "version": "1"},
        "paths": {
            "/api/v1/things": {
                "post": {
                    "responses": {
                        "201": {
                            "description": "Created",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "409": {"description": "Taken"},
                        "422": {"$ref": "#/components/responses/UNPROCESSABLE_ENTITY"},
                        "default": {"$ref": "#/components/responses/DEFAULT_ERROR"},
                    }
                }
            }
        },
        "components": {
            "schemas": {"Problem": {"type": "object", "additionalProperties": False}},
            "responses": {
                "UNPROCESSABLE_ENTITY": {"description": "x", "content": {"application/json": {"schema": problem}}},
                "DEFAULT_ERROR": {"description": "y", "content": {"application/json": {"schema": problem}}},
            },
        },
    }
    merged = merge_documents({"openapi": "3.1.0", "paths": {}}, {"thing": service}, [])
    responses = merged["paths"]["/api/v1/things"]["post"]["responses"]
    assert list(responses["201"]["content"]) == ["application/json"]
    assert responses["409"]["content"] == {PROBLEM_TYPE: {"schema": problem}}
    for name in ("UNPROCESSABLE_ENTITY", "DEFAULT_ERROR"):
        assert list(merged["components"]["responses"][name]["content"]) == [PROBLEM_TYPE]


def test_the_gateway_s_own_operation_keeps_its_description_in_the_merge():
    """``GET /operations`` is answered by the gateway (every owner's list merged): the customer
    service's own entry for it must not replace the gateway's; its other paths still merge."""
    mine = {"get": {"summary": "gateway", "description": "Every service's operations", "responses": {}}}
    gateway_doc = {"openapi": "3.1.0", "paths": {"/api/v1/operations": mine}}
    service = {
        "paths": {
            "/api/v1/operations": {
                "get": {"summary": "service", "responses": {}},
                "post": {"summary": "service post", "responses": {}},
            },
            "/api/v1/operations/{operation_id}": {"get": {"summary": "one", "responses": {}}},
        }
    }
    merged = merge_documents(gateway_doc, {"customer": service}, [])
    listed = merged["paths"]["/api/v1/operations"]
    assert listed["get"]["summary"] == "gateway" and "x-vigil-service" not in listed["get"]
    assert listed["post"]["x-vigil-service"] == "customer"
    assert merged["paths"]["/api/v1/operations/{operation_id}"]["get"]["x-vigil-service"] == "customer"


def test_the_merged_document_describes_the_operations_list_once_as_the_gateway_s(client):
    document = client.get("/api/v1/openapi.json").get_json()
    listed = document["paths"]["/api/v1/operations"]["get"]
    text = listed.get("summary", "") + listed.get("description", "")
    assert "x-vigil-service" not in listed and "from every service" in text
