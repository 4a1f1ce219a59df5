"""Runs every Vigil test suite, each in its own pytest process, and prints one total.

Suites: lint first (ruff check, ruff format --check, mypy and import-linter's import boundaries, each
also selectable by its own name; `make lint` runs them), then shared, each service, the gateway, the
runner (deploy/runner/tests: supervision, the run lock), and the end-to-end suite in tests/.
The database/broker backend is chosen once here
(PostgreSQL + RabbitMQ when reachable, the embedded defaults otherwise) and passed to every suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from vigil_shared.testing import choose_backend, describe_backend, postgres_admin_url, rabbitmq_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The static checks of the `lint` suite; their settings live in the root pyproject.toml and .importlinter.
LINT_CHECKS = [
    ("ruff", ["ruff", "check", "."]),
    ("ruff-format", ["ruff", "format", "--check", "."]),
    ("mypy", ["mypy"]),
    ("import-linter", ["lint-imports", "--no-cache"]),
]
SUITES = [
    ("shared", "shared/tests"),
    ("customer", "services/customer/tests"),
    ("property", "services/property/tests"),
    ("billing", "services/billing/tests"),
    ("credit", "services/credit/tests"),
    ("gateway", "gateway/tests"),
    ("sandboxes", "sandboxes"),
    ("runner", "deploy/runner/tests"),
    ("e2e", "tests"),
]


def counts(report: Path) -> tuple[int, int, int]:
    if not report.exists():
        return 0, 0, 0
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    return total - failures - errors - skipped, failures + errors, skipped


def main(argv: list[str]) -> int:
    checks = [c for c in LINT_CHECKS if not argv or "lint" in argv or c[0] in argv]
    selected = [s for s in SUITES if not argv or s[0] in argv]
    backend = choose_backend()
    os.environ["VIGIL_TEST_BACKEND"] = backend
    if backend == "postgres":
        print(
            f"vigil: integration and e2e tests use PostgreSQL ({postgres_admin_url().split('@')[-1]}) "
            f"and RabbitMQ ({rabbitmq_url().split('@')[-1]})",
            flush=True,
        )
    else:
        print(
            f"vigil: integration and e2e tests use {describe_backend(backend)} and the embedded SQLite broker",
            flush=True,
        )
    reports = ROOT / "var" / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    passed = failed = skipped = 0
    broken: list[str] = []
    for name, (tool, *args) in checks:
        print(f"\n== lint: {name}", flush=True)
        if subprocess.run([str(BIN / tool), *args], cwd=ROOT).returncode != 0:
            broken.append(f"lint ({name})")
            failed += 1
        else:
            passed += 1
    for name, path in selected:
        print(f"\n== {name} ({path})", flush=True)
        report = reports / f"{name}.xml"
        report.unlink(missing_ok=True)
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                path,
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                "-o",
                "junit_family=xunit2",
            ],
            cwd=ROOT,
        ).returncode
        p, f, s = counts(report)
        passed, failed, skipped = passed + p, failed + f, skipped + s
        if code != 0:
            broken.append(name if code != 5 else f"{name} (no tests collected)")
            failed += 0 if f else 1
    print()
    if broken:
        print(f"vigil: failing suites: {', '.join(broken)}")
    print(f"vigil: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
