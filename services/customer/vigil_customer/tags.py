"""The tag catalog (admins keep it) and the tags applied to records.

Tag names are unique case-insensitively; applying a tag twice is harmless, and every apply and
removal lands in the record's history.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import conflict, flush_unique, get_or_404, not_found

from . import history
from .customers import touch
from .models import CustomerTag, Tag


def _name_taken() -> Exception:
    return conflict("A tag with this name exists.", errors={"name": ["Already in use."]})


def catalog_statement(q: str | None = None):
    statement = select(Tag).order_by(Tag.name_key)
    if q:
        statement = statement.where(Tag.name_key.startswith(q.strip().lower(), autoescape=True))
    return statement


def get_tag(session: Session, tag_id: int) -> Tag:
    return get_or_404(session, Tag, tag_id, "tag")


def find_by_name(session: Session, name: str) -> Tag:
    tag = session.scalar(select(Tag).where(Tag.name_key == name.strip().lower()))
    if tag is None:
        raise not_found("tag")
    return tag


def create_tag(session: Session, data: dict) -> Tag:
    if session.scalar(select(Tag.id).where(Tag.name_key == data["name"].lower())) is not None:
        raise _name_taken()
    tag = Tag(name=data["name"], name_key=data["name"].lower(), color=data.get("color"), created_at=utcnow())
    session.add(tag)
    flush_unique(session, _name_taken)
    return tag


def update_tag(session: Session, tag: Tag, changes: dict) -> Tag:
    if "name" in changes and changes["name"].lower() != tag.name_key:
        if session.scalar(select(Tag.id).where(Tag.name_key == changes["name"].lower())) is not None:
            raise _name_taken()
        tag.name_key = changes["name"].lower()
    for key, value in changes.items():
        setattr(tag, key, value)
    flush_unique(session, _name_taken)
    return tag


def delete_tag(session: Session, tag: Tag) -> None:
    """Removes the tag from the catalog and from every record (the applied rows go by ``ON DELETE CASCADE``).

    It counts nothing: the records carrying it are in every office, and the catalog's manager may be
    scoped to some of them, so no number of them may reach the answer.
    """
    session.delete(tag)
    session.flush()


def applied_statement(customer_id: int):
    return (
        select(Tag)
        .join(CustomerTag, CustomerTag.tag_id == Tag.id)
        .where(CustomerTag.customer_id == customer_id)
        .order_by(Tag.name_key)
    )


def apply(session: Session, actor: history.Actor, customer_id: int, tag: Tag) -> bool:
    """True when newly applied, False when the record already had it."""
    if session.get(CustomerTag, (customer_id, tag.id)) is not None:
        return False
    added(session, CustomerTag(customer_id=customer_id, tag_id=tag.id, applied_at=utcnow(), applied_by=actor.name))
    history.record(
        session, actor, customer_id, "tag_add", target_type="tag", target_id=tag.id, field="tags", new=tag.name
    )
    touch(session, customer_id)
    return True


def remove(session: Session, actor: history.Actor, customer_id: int, tag_id: int) -> None:
    applied = session.get(CustomerTag, (customer_id, tag_id))
    if applied is None:
        raise not_found("tag on this record")
    name = applied.tag.name
    session.delete(applied)
    session.flush()
    history.record(
        session, actor, customer_id, "tag_remove", target_type="tag", target_id=tag_id, field="tags", old=name
    )
    touch(session, customer_id)
