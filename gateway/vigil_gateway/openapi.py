"""The public OpenAPI document: the gateway's own operations merged with every service's.

Each service documents its operations with flask-smorest; the gateway fetches their documents
(signed like any call), merges paths, tags and components, renames a component only when two
services define different schemas under one name, and adds the responses only the gateway gives
(401 without a token, 503 when the owning service is down). A path and method the gateway answers
itself keeps the gateway's description, whatever a service says of its own. A service that does not answer leaves
its paths out and is named under ``x-vigil-unavailable-services`` rather than failing the document.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response

from vigil_shared.errors import not_found

log = logging.getLogger("vigil.gateway.openapi")

CACHE_SECONDS = 30
GATEWAY_RESPONSES = {
    "401": {
        "description": "Missing, invalid or expired bearer token",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "503": {
        "description": "The service owning this operation is unavailable",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
PROBLEM_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"


def _is_error_status(status: str) -> bool:
    return status == "default" or status[:1] in ("4", "5")


def _as_problem(response: dict) -> dict:
    """An error response declared as sent: ``application/problem+json`` with the Problem schema.

    flask-smorest declares error responses as ``application/json`` (and ``alt_response`` entries
    without a schema have no content at all), while every error leaves as problem+json.
    """
    if "$ref" in response:
        return response
    content = response.get("content") or {}
    schema = next((media.get("schema") for media in content.values() if media.get("schema")), None)
    if schema is None or schema == {"$ref": PROBLEM_REF}:
        return response | {"content": {PROBLEM_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}
    json_media = content.get("application/json")
    if json_media is not None and PROBLEM_TYPE not in content:
        content = {PROBLEM_TYPE if key == "application/json" else key: value for key, value in content.items()}
        return response | {"content": content}
    return response


def declare_problem_responses(document: dict) -> dict:
    """Every error response of ``document`` (inline or a component) declared as problem+json.

    The Problem schema admits extension members (RFC 9457 §3.2: ``permission``, ``matches``, …).
    """
    components = document.setdefault("components", {})
    for name, response in list(components.get("responses", {}).items()):
        if name == "DEFAULT_ERROR" or (response.get("content") or {}).get("application/json", {}).get("schema") == {
            "$ref": PROBLEM_REF
        }:
            components["responses"][name] = _as_problem(response)
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict):
                operation["responses"] = {
                    status: _as_problem(response) if _is_error_status(status) else response
                    for status, response in operation.get("responses", {}).items()
                }
    problem = components.setdefault("schemas", {}).get("Problem")
    if isinstance(problem, dict):
        problem.pop("additionalProperties", None)
    return document


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                name = value.rsplit("/", 1)[1]
                value = f"#/components/schemas/{renames.get(name, name)}"
            result[key] = _rewrite_refs(value, renames)
        return result
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge_documents(gateway_doc: dict, service_docs: dict[str, dict], unavailable: list[str]) -> dict:
    merged = copy.deepcopy(gateway_doc)
    merged["info"] = {
        "title": "Vigil API",
        "version": "v1",
        "description": "Customer and account management for security-alarm dealers. Every operation is "
        "reached through the gateway at `/api/v1` with `Authorization: Bearer <token>` "
        "from `POST /api/v1/auth/token`. Errors are RFC 9457 problem+json.",
    }
    components = merged.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    tags = {tag["name"]: tag for tag in merged.get("tags", [])}
    paths = merged.setdefault("paths", {})
    # what the gateway answers itself (``GET /operations`` merges every owner's list) is described by
    # the gateway: a service's own entry for the same path and method is not what the caller reaches
    own = {(path, method) for path, item in paths.items() for method in item if method in HTTP_METHODS}
    for service, doc in sorted(service_docs.items()):
        doc_schemas = doc.get("components", {}).get("schemas", {})
        renames = {
            name: f"{service.title()}{name}"
            for name, schema in doc_schemas.items()
            if name in schemas and schemas[name] != schema
        }
        doc = _rewrite_refs(doc, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for section in ("responses", "parameters", "securitySchemes"):
            for name, value in doc.get("components", {}).get(section, {}).items():
                components.setdefault(section, {}).setdefault(name, value)
        for tag in doc.get("tags", []):
            tags.setdefault(tag["name"], tag | {"x-vigil-service": service})
        for path, item in doc.get("paths", {}).items():
            target = paths.setdefault(path, {})
            for method, operation in item.items():
                if (path, method) in own:
                    continue
                if method in HTTP_METHODS:
                    operation = dict(operation)
                    operation["responses"] = GATEWAY_RESPONSES | operation.get("responses", {})
                    operation["x-vigil-service"] = service
                target[method] = operation
    schemas.setdefault("Problem", gateway_doc.get("components", {}).get("schemas", {}).get("Problem", {}))
    merged["tags"] = sorted(tags.values(), key=lambda tag: tag["name"])
    merged["paths"] = dict(sorted(paths.items()))
    if unavailable:
        merged["x-vigil-unavailable-services"] = sorted(unavailable)
    return declare_problem_responses(merged)


class MergedSpec:
    """Caches the merged document; services are asked again after ``CACHE_SECONDS`` or if one was down."""

    def __init__(self, gateway_doc: Callable[[], dict], fetch: Callable[[str], dict], services: list[str]):
        self._gateway_doc = gateway_doc
        self._fetch = fetch
        self._services = services
        self._lock = threading.Lock()
        self._cached: tuple[float, dict] | None = None

    def document(self) -> dict:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            docs, unavailable = {}, []
            for service in self._services:
                try:
                    docs[service] = self._fetch(service)
                except Exception as exc:  # noqa: BLE001 - a down service must not break the document
                    log.warning("service document unavailable", extra={"service": service, "error": type(exc).__name__})
                    unavailable.append(service)
            merged = merge_documents(self._gateway_doc(), docs, unavailable)
            if not unavailable:
                self._cached = (time.monotonic(), merged)
            return merged


def fetch_service_document(pool, base_url: str, headers: dict) -> dict:
    response = pool.request("GET", f"{base_url}/openapi.json", body=None, headers=headers)
    if response.status != 200:
        raise RuntimeError(f"service answered {response.status}")
    return json.loads(response.data)


# --- the docs page -------------------------------------------------------------------------------
# Swagger UI comes from the flask-swagger-ui distribution (PyPI), whose ``dist/`` folder is the
# upstream swagger-ui-dist build; only its files are used, served by the gateway itself so the page
# works on a machine without internet. The page has no inline script (the start-up code is a file
# too), asks no outside validator, and every path is relative, so it also works under a path prefix.
# Tags start collapsed: with every one of its 130-odd operations open, Swagger UI stopped part way
# in headless Chromium; a tag opens on a click or through its link (``/api/v1/docs#/customers``).
DOCS_PATH = "/api/v1/docs"
SWAGGER_UI_PACKAGE = "flask_swagger_ui"
DOCS_START_JS = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  persistAuthorization: true,
  validatorUrl: null,
  deepLinking: true,
  docExpansion: "none"
});
"""
DOCS_ASSETS = {  # file name → (source, content type); the source is the Swagger UI dist or this module
    "swagger-ui.css": ("dist", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": ("dist", "text/javascript; charset=utf-8"),
    "favicon-32x32.png": ("dist", "image/png"),
    "favicon-16x16.png": ("dist", "image/png"),
    "vigil-docs.js": ("inline", "text/javascript; charset=utf-8"),
}
DOCS_ASSET_PATHS = frozenset(f"{DOCS_PATH}/{name}" for name in DOCS_ASSETS)
PUBLIC_DOCS_PATHS = DOCS_ASSET_PATHS | {DOCS_PATH}
DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
</head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/vigil-docs.js"></script>
</body></html>
"""


@functools.cache
def docs_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of one docs asset, or ``None`` for a name that is not one."""
    if name not in DOCS_ASSETS:
        return None
    source, content_type = DOCS_ASSETS[name]
    if source == "inline":
        return DOCS_START_JS.encode(), content_type
    return (importlib.resources.files(SWAGGER_UI_PACKAGE) / "dist" / name).read_bytes(), content_type


def docs_blueprint() -> Blueprint:
    """``/api/v1/docs`` and its assets; public (the gateway lists ``PUBLIC_DOCS_PATHS`` as such)."""
    blueprint = Blueprint("docs", __name__)

    def _static(body: bytes, content_type: str, max_age: int) -> Response:
        response = Response(body, content_type=content_type)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
        return response

    @blueprint.get(DOCS_PATH)
    def docs_page():
        return _static(DOCS_HTML.encode(), "text/html; charset=utf-8", 300)

    @blueprint.get(f"{DOCS_PATH}/<name>")
    def docs_file(name: str):
        asset = docs_asset(name)
        if asset is None:
            raise not_found("resource")
        return _static(*asset, 86400)

    return blueprint
