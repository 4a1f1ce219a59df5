"""The API docs page renders offline, from assets the gateway serves itself.

The browser test runs Debian's Chromium headless with every host name other than the gateway's
unresolvable, so a page that still needed a CDN would render blank and fail. Where no Chromium
binary exists it is skipped, and the asset test below (no browser) still checks that every file
the page references is served, public, typed and ``nosniff``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from urllib.parse import urljoin

import pytest
import requests

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EXPECTED_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
ASSET_REF = re.compile(r'(?:href|src)="([^"]+)"')


def chromium_binary() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def test_docs_page_assets_are_served_offline(stack, anonymous):
    page = anonymous.get("/api/v1/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    refs = ASSET_REF.findall(page.text)
    assert len(refs) >= 3, page.text
    for ref in refs:
        url = urljoin(anonymous.url("/api/v1/docs"), unescape(ref))
        assert url.startswith(stack.gateway_url), f"{ref} is not served by the gateway"
        asset = requests.get(url, timeout=15)  # no credentials: the page loads before sign-in
        assert asset.status_code == 200, (ref, asset.status_code)
        extension = "." + ref.rsplit(".", 1)[1]
        assert asset.headers["Content-Type"].split(";")[0] == EXPECTED_TYPES[extension], (ref, asset.headers)
        assert asset.headers["X-Content-Type-Options"] == "nosniff", ref
        assert asset.content


def test_docs_page_renders_operations_in_headless_chromium(stack, anonymous, tmp_path):
    """Every tag of the merged document is listed (collapsed: the API has over a hundred operations),
    and a tag opened through its link (``#/<tag>``) shows each of its operations."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no Chromium binary on PATH (Debian: apt-get install chromium); "
            "test_docs_page_assets_are_served_offline covers the assets without a browser"
        )
    host = stack.gateway_url.split("//", 1)[1].split(":", 1)[0]

    def rendered(fragment: str = "") -> str:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            # offline: any host but the gateway's fails to resolve, as on a machine without internet
            f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            f"{stack.gateway_url}/api/v1/docs{fragment}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0 and done.stdout, done.stderr[-2000:]
        assert 'class="swagger-ui' in done.stdout, done.stdout[:2000]
        assert "Failed to load API definition" not in done.stdout
        return done.stdout.replace("\u200b", "")

    spec = anonymous.get("/api/v1/openapi.json").json()
    dom = rendered()
    assert "Vigil API" in dom  # the title from the merged document: the spec was fetched and rendered
    listed = set(re.findall(r'id="operations-tag-([^"]+)"', dom))
    assert listed == {tag["name"] for tag in spec["tags"]}, listed
    for tag, path in (
        ("customers", "/api/v1/customers"),
        ("properties", "/api/v1/properties/{property_id}"),
        ("auth", "/api/v1/auth/token"),
    ):
        opened = rendered(f"#/{tag}")
        operations = re.findall(r'class="opblock opblock-(get|post|patch|put|delete)', opened)
        expected = sum(
            tag in op.get("tags", [])
            for item in spec["paths"].values()
            for op in item.values()
            if isinstance(op, dict) and "responses" in op
        )
        assert len(operations) == expected > 0, (tag, len(operations), expected)
        assert f'data-path="{path}"' in opened or f">{path}<" in opened, path


def test_readme_names_only_documents_the_repository_has():
    """The README once sent readers to a CONVENTIONS.md that was never in the repository."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    named = set(re.findall(r"\]\(([^)#\s]+\.md)\)", readme)) | set(re.findall(r"`([\w./-]+\.md)`", readme))
    assert "docs/api.md" in named
    missing = sorted(name for name in named if not (root / name).is_file())
    assert not missing, f"README names documents that do not exist: {missing}"
