"""Flushing a unit of work so that a lost race reaches the caller as a 409, never as a 500."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from vigil_shared.errors import Problem, conflict


def changed_meanwhile() -> Problem:
    return conflict("The record was changed or removed by someone else meanwhile. Reload it and try again.")


def flush(session: Session, on_integrity_error: Callable[[], Problem] = changed_meanwhile) -> None:
    """Flushes; a constraint a concurrent request won, or a row changed since it was read, becomes a problem."""
    try:
        session.flush()
    except IntegrityError:
        raise on_integrity_error() from None
    except StaleDataError:
        raise changed_meanwhile() from None
