"""Asks the customer service about a customer, for when the replica has not heard of it yet.

The ``customer.created`` event can trail the customer's creation by a moment; a client that creates
a customer and then at once a property for it must not get a 422 for that. The answer also carries
the customer's office location, which decides who may see the customer's properties, and its
Monitored By, which decides which central station's messages reach them.
The signed call itself is :func:`vigil_shared.customer_replica.lookup_customer`.
"""

from __future__ import annotations

from vigil_shared import customer_replica
from vigil_shared.customer_replica import CustomerFacts as CustomerFacts  # what the property service needs

# with the sale section's view: the answer then shows the customer's Monitored By, which decides which
# central station may link its properties (vigil_property.monitoring); only that id is kept of it
PERMISSIONS = customer_replica.VIEW_PERMISSIONS | {"customers.sale_info.view"}


def lookup_customer(customer_id: int) -> CustomerFacts | None:
    """The customer's facts for 200, None for 404; 503 problem when the customer service cannot answer."""
    return customer_replica.lookup_customer("property", customer_id, PERMISSIONS)
