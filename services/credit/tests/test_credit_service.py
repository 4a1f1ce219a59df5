"""The credit service passes the checks every service passes (its own tests come with its features)."""

from vigil_shared.service_checks import *  # noqa: F403 (the shared checks, collected here)
