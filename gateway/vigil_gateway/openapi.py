"""The public OpenAPI document: the gateway's own operations merged with every service's.

Each service documents its operations with flask-smorest; the gateway fetches their documents
(signed like any call), merges paths, tags and components, renames a component only when two
services define different schemas under one name, and adds the responses only the gateway gives
(401 without a token, 503 when the owning service is down). A service that does not answer leaves
its paths out and is named under ``x-vigil-unavailable-services`` rather than failing the document.
"""
from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger("vigil.gateway.openapi")

CACHE_SECONDS = 30
GATEWAY_RESPONSES = {
    "401": {"description": "Missing, invalid or expired bearer token",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    "503": {"description": "The service owning this operation is unavailable",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


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
    for service, doc in sorted(service_docs.items()):
        doc_schemas = doc.get("components", {}).get("schemas", {})
        renames = {name: f"{service.title()}{name}" for name, schema in doc_schemas.items()
                   if name in schemas and schemas[name] != schema}
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
    return merged


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


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true});</script>
</body></html>
"""
