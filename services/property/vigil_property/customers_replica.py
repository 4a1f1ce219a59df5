"""The property service's replica of which customers exist and in which office location.

The shared :class:`vigil_shared.customer_replica.CustomerReplica` over property's ``known_customers``
(newer location wins, a tombstone stays one), plus the archive state, which the archive saga's
events order by their own moment (``archived_as_of``).
"""

from __future__ import annotations

from vigil_shared.customer_replica import CustomerReplica

from .models import KnownCustomer

__all__ = [
    "follow",
    "customer_archived",
    "customer_deleted",
    "customer_seen",
    "is_archived",
    "known_customer",
    "resolve",
]

# the location and Monitored By travel with the customer here (Monitored By decides which central station
# may link its properties: vigil_property.monitoring); the archive state has its own order (archived_as_of)
_replica = CustomerReplica(KnownCustomer, facts=("monitoring_company_id",), confirmed_by=("monitoring_company_id",))

known_customer = _replica.known
customer_seen = _replica.seen
customer_deleted = _replica.deleted  # what it had is removed by ``properties.remove_customer``
resolve = _replica.resolve
customer_archived = _replica.archived  # fed by the archive saga's events, ordered by archived_as_of
follow = _replica.follow
is_archived = _replica.is_archived
