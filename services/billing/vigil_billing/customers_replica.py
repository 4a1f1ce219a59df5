"""The billing service's replica of the customers: office location, kind, parent, archived.

The shared :class:`vigil_shared.customer_replica.CustomerReplica` over billing's ``known_customers``:
kind, parent and archive state travel with the location and are only replaced by facts known at a
later moment. What billing held for a deleted customer is removed by ``accounts.remove_customer``.
"""

from __future__ import annotations

from vigil_shared.customer_replica import CustomerReplica

from .models import KnownCustomer

__all__ = [
    "customer_archived",
    "customer_deleted",
    "customer_seen",
    "follow",
    "is_archived",
    "known_customer",
    "resolve",
]

# the customer service's answer is recorded when it differs in location, kind or archive state
# (the archive state, which the archive saga's events also set, is ordered by its own ``archived_as_of``)
_replica = CustomerReplica(
    KnownCustomer, facts=("kind", "parent_id", "archived"), confirmed_by=("kind", "archived"), archive_as_of=True
)

known_customer = _replica.known
customer_seen = _replica.seen
customer_archived = _replica.archived
customer_deleted = _replica.deleted
resolve = _replica.resolve
follow = _replica.follow
is_archived = _replica.is_archived
