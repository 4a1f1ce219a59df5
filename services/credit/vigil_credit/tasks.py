"""Celery tasks of the credit service. It consumes no events yet; its queue exists for later work."""

from __future__ import annotations

from vigil_shared.runtime import ServiceRuntime


def register_tasks(runtime: ServiceRuntime) -> None:
    runtime.consumer().register_task(runtime.celery)
