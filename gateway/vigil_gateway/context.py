"""The gateway's per-request handles: its settings, its database session, its password hasher, the signed-in user."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from vigil_shared.db import Database

from .integrations import Intake
from .models import User
from .passwords import Passwords
from .settings import GatewaySettings


def settings() -> GatewaySettings:
    return current_app.extensions["vigil_gateway_settings"]


def database() -> Database:
    return current_app.extensions["vigil_gateway_db"]


def intake() -> Intake:
    return current_app.extensions["vigil_gateway_intake"]


def passwords() -> Passwords:
    return current_app.extensions["vigil_gateway_passwords"]


def db_session() -> Session:
    return database().request_session()


def signed_in_user() -> User | None:
    """The user behind the current call (None for API keys), loaded on first use."""
    if "user" not in g:
        user_id = g.get("user_id")
        g.user = db_session().get(User, user_id) if user_id is not None else None
    return g.user
