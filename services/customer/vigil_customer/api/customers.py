"""Customers and leads: one resource with ``kind``. Views parse, call one command, render."""

from __future__ import annotations

from flask import Response, jsonify, request, url_for
from flask.views import MethodView

from vigil_shared import operations
from vigil_shared.endpoints import Blueprint
from vigil_shared.fields import schema_dumper
from vigil_shared.http import Page, etag_headers, paginate
from vigil_shared.operations import OperationSchema
from vigil_shared.web import current_identity, current_runtime, note_confidential_read, request_session

from .. import archiving, commands, family, history, present, search
from ..access import CUSTOMER, Access, section_view_permission
from ..schemas import (
    ArchiveSchema,
    ArchiveTargetsSchema,
    ConvertSchema,
    CustomerCreateArgs,
    CustomerCreateSchema,
    CustomerListArgs,
    CustomerListItemSchema,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerSchema,
    DuplicateSchema,
    FamilySchema,
    HistoryArgs,
    HistoryPageSchema,
    ParentCandidateArgs,
    UnarchiveSchema,
)
from .common import (
    LIKELY_DUPLICATES,
    NOT_DELETED,
    archive_rule,
    cipher,
    context,
    if_match,
    loaded,
    own_rule,
    tab_rule,
    view_rule,
)

blp = Blueprint("customers", __name__, url_prefix="/api/v1/customers", description="Customers and leads")


def visibility() -> search.Visibility:
    """What the caller's list and search reach: customers and leads where they may view them, and a
    property account number finds a record only where they also hold ``properties.view``."""
    identity = current_identity()
    return search.Visibility(
        identity.location_filter("customers.view"),
        identity.location_filter("leads.view"),
        identity.location_filter("properties.view"),
    )


# CustomerSchema's dump of a record's view, by converters built once (the schema's per-value machinery
# was about a twentieth of a create's CPU, bench/bench_customer_create.py); test_fast_paths.py pins the
# JSON to the schema's own dump.
_dump_record = schema_dumper(CustomerSchema())


def record_response(session, customer, status: int = 200, *, new: bool = False, **headers) -> Response:
    """The record as the caller sees it, as a ready response with its ``ETag`` (a ``Response`` passes
    flask-smorest's schema untouched). ``new``: a record created by this request, which has no tags yet."""
    body = present.customer_view(session, customer, current_identity(), cipher(), tags=[] if new else None)
    response = jsonify(_dump_record(body))
    response.status_code = status
    response.headers.update(etag_headers(customer, **headers))
    return response


# A page's twenty items are dumped by converters built once from CustomerListItemSchema instead of its
# dump: the same JSON (services/customer/tests/test_search.py compares them), at a fifth of the CPU;
# marshmallow's per-value machinery was a fifth of the page's CPU (bench/bench_customer_search.py, page 1
# without q).
_dump_item = schema_dumper(CustomerListItemSchema())


def dump_list_items(items: list[dict]) -> list[dict]:
    return [_dump_item(item) for item in items]


def list_response(query: search.ListQuery, vis: search.Visibility):
    """A page of the list. Its statements are reads only, so they run outside any transaction, on an
    autocommit connection (``Database.read``): the request session's liveness probe, ``BEGIN`` and
    ``ROLLBACK`` were three round trips more than the page (whose rows carry their tags). Each
    statement still sees the data as committed when it starts, as under the session's READ COMMITTED.

    A ``tag`` filter looks only where the caller holds ``tags.view``: the items' tags are left out
    elsewhere, and a filter by tag would list exactly the records carrying it all the same."""
    identity = current_identity()
    if query.tag:
        vis = vis.within(identity.location_filter("tags.view"))
    result = current_runtime().db.read(lambda conn: search.list_customers(conn, query, vis))
    tags = result.tags
    items = [
        present.list_item(c, tags.get(c.id, []) if identity.can("tags.view", c.location_id) else None)
        for c in result.rows
    ]
    args = {k: v if len(v) > 1 else v[0] for k, v in request.args.to_dict(flat=False).items()}
    # already dumped (see dump_list_items): a Response passes flask-smorest's schema untouched
    response = jsonify(result.body(dump_list_items(items)))
    response.headers.update(result.headers(request.path, args))
    return response


CREATE_REFUSED = {403: "You may not create records in this location, or set some of the fields", 409: LIKELY_DUPLICATES}


@blp.route("")
class Customers(MethodView):
    @blp.read("customers.view", CustomerPageSchema, query=CustomerListArgs, query_kwargs=False)
    def get(self, args):
        """List and search customers and leads of the locations you may view, 20 a page.

        `q` matches the start of any word of the name, business or DBA name, email, phone digits in
        any format, the customer id and property account numbers (an account number only finds
        records where you also hold `properties.view`). `total` is exact up to 10,000 and
        flagged `total_estimated` beyond. Follow the `Link` headers (they carry a keyset `cursor`)
        to page deep without slowing down; a bare `page` number reaches the first 10,000 records
        (deeper is a 422 that points at the cursor). Leads appear only where you also hold `leads.view`.
        """
        return list_response(search.ListQuery(**args), visibility())

    @blp.create(
        "customers.create", CustomerSchema, query=CustomerCreateArgs, body=CustomerCreateSchema, answers=CREATE_REFUSED
    )
    def post(self, data, allow_duplicates=False, run_precheck=None):
        """Create a customer, or a lead with `kind: lead` (which also needs `leads.create`).

        Likely duplicates (same phone, email, SSN, or name and address) answer 409 listing them;
        repeat with `?allow_duplicates=true` to create the record anyway.
        """
        customer = commands.create_customer(
            context(), data, allow_duplicates=allow_duplicates, run_precheck=run_precheck
        )
        return record_response(
            request_session(),
            customer,
            201,
            new=True,
            Location=url_for("customers.CustomerItem", customer_id=customer.id),
        )


READ_REFUSED = {
    403: "A lead where you hold other rights, and you may view leads nowhere",
    404: "No such record, or one in a location where you may not view it",
}


CHANGE_REFUSED = {
    403: "Some fields need a permission you lack (named in `errors`)",
    409: "The email address is already used by another record; the customer is archived; or "
    "`monitoring_company_id` (Monitored By) is changed while a property is linked to a central station "
    "(`urn:vigil:problem:central-station-linked`, listing the linked `properties`)",
}


@blp.route("/<int:customer_id>")
class CustomerItem(MethodView):
    @blp.read("customers.view", CustomerSchema, rule=own_rule, answers=READ_REFUSED)
    def get(self, customer_id):
        """Read one record as you may see it; the `ETag` header is what `If-Match` expects.

        Sale and installation sections appear only with their view permission; confidential fields
        are masked unless you hold their confidential view permission. A lead needs `leads.view`.
        """
        return record_response(request_session(), loaded())

    @blp.change("customers.modify", CustomerSchema, rule=own_rule, body=CustomerPatchSchema, answers=CHANGE_REFUSED)
    def patch(self, changes, customer_id):
        """Change some fields. Nothing changes unless every field sent may be set and is valid."""
        customer = commands.update_customer(context(if_match()), loaded(), changes)
        return record_response(request_session(), customer)

    @blp.remove("customers.delete", rule=own_rule, stale=NOT_DELETED)
    def delete(self, customer_id):
        """Delete a record with its notes, contacts, tags, files and history; other services drop
        theirs on `customer.deleted`. A lead needs `leads.delete`."""
        commands.delete_customer(context(if_match()), loaded())
        return None


CONVERT_REFUSED = {
    403: "No right in the target location, or the conversion would show you values "
    "masked for you where the lead is now (named in `errors`)",
    409: "The record is not a lead",
}


@blp.route("/<int:customer_id>/convert")
class ConvertLead(MethodView):
    @blp.transition("leads.modify", CustomerSchema, rule=own_rule, body=ConvertSchema, answers=CONVERT_REFUSED)
    def post(self, data, customer_id):
        """Convert a lead to a customer in an office location, with its sales rep.

        The record keeps its id, data and history and gains the customer-only sections. Needs
        `leads.modify` on the lead and `customers.create` in the target location.
        """
        customer = commands.convert_lead(context(if_match()), loaded(), data)
        return record_response(request_session(), customer)


@blp.route("/<int:customer_id>/duplicate")
class DuplicateCustomer(MethodView):
    @blp.create("customers.create", CustomerSchema, record=view_rule, body=DuplicateSchema)
    def post(self, overrides, customer_id):
        """Create a new record starting as a copy of this one (not a merge).

        The copy takes what you may see of the original *where it is* and may enter, except
        per-account values (email, account and ADT numbers, installation codes, cancellation): a
        value masked for you there stays empty in the copy. Fields in the body replace the copied ones.
        """
        copy = commands.duplicate_customer(context(), loaded(), overrides)
        return record_response(
            request_session(), copy, 201, new=True, Location=url_for("customers.CustomerItem", customer_id=copy.id)
        )


@blp.route("/<int:customer_id>/history")
class CustomerHistory(MethodView):
    @blp.read("history.view", HistoryPageSchema, rule=tab_rule, query=HistoryArgs)
    def get(self, customer_id, page, per_page, **filters):
        """Every change to the record and its notes, contacts, tags and files, newest first.

        Filter by `field`, `user`, `source`, `action` and a `since`/`until` range. Confidential
        values are masked unless you hold their view permission; sections you may not view are left out.
        """
        session, customer = request_session(), loaded()
        access = Access(current_identity(), customer.kind, customer.location_id)
        result = paginate(session, history.query(customer.id, access, **filters), page, per_page)
        items, shown = history.present(result.items, access, cipher())
        if shown:
            note_confidential_read("customer_history", customer.id, shown)
        page_out = Page(items=items, page=result.page, per_page=result.per_page, total=result.total)
        return page_out.body(), 200, page_out.headers()


# --- archiving (docs/archive.md) ---------------------------------------------------------------------


def operation_response(operation):
    body = operations.present(operation, None, archiving.operation_links(operation))
    return body, 202, {"Location": body["links"]["self"]}


@blp.route("/<int:customer_id>/archive-targets")
class ArchiveTargets(MethodView):
    @blp.read("customers.archive", ArchiveTargetsSchema, rule=archive_rule, conflict="A lead, or already archived")
    def get(self, customer_id):
        """Who archiving this customer would archive: it and its unarchived sub-customers.

        The customer service's part of `GET /customers/{id}/archive-preview`, which adds each
        service's affected items."""
        return archiving.preview(context(), loaded())


UNCONFIRMED = "`confirm` is not true"
ARCHIVE_REFUSED = {409: "A lead, or already archived", 422: UNCONFIRMED}


@blp.route("/<int:customer_id>/archive")
class ArchiveCustomer(MethodView):
    @blp.start("customers.archive", OperationSchema, rule=archive_rule, body=ArchiveSchema, answers=ARCHIVE_REFUSED)
    def post(self, data, customer_id):
        """Archive a customer and its unarchived sub-customers (cascade); answers 202 with the operation.

        The customer is read-only everywhere at once; each service then cancels the customer's
        future items (appointments; recurring invoices and scheduled payments in billing), each
        stamped with the operation's id. Follow the operation (`Location`) until it has `succeeded`.
        """
        return operation_response(commands.archive_customer(context(), loaded()))


UNARCHIVE_REFUSED = {
    409: "Not archived, or a sub-customer whose parent is still archived "
    "(`urn:vigil:problem:parent-archived`: unarchive the parent first)",
    422: UNCONFIRMED,
}


@blp.route("/<int:customer_id>/unarchive")
class UnarchiveCustomer(MethodView):
    @blp.start(
        "customers.unarchive",
        OperationSchema,
        rule=archive_rule,
        body=UnarchiveSchema,
        answers=UNARCHIVE_REFUSED,
    )
    def post(self, data, customer_id):
        """Unarchive a customer: `scope` `parent` (default) or `parent_and_children`.

        Items cancelled by archiving are not restored unless `restore_cancelled` is true: then each
        service restores exactly the items the archive operation cancelled that still make sense
        (an appointment still in the future whose technician is free)."""
        operation = commands.unarchive_customer(context(), loaded(), data["scope"], data["restore_cancelled"])
        return operation_response(operation)


# --- parent and sub-customers ------------------------------------------------------------------------


@blp.route("/<int:customer_id>/sub-customers")
class SubCustomers(MethodView):
    @blp.read("customers.view", FamilySchema, rule=own_rule)
    def get(self, customer_id):
        """The customer's parent and sub-customers you may view, with the header line: "Sub-customer
        of {name}" on a sub-customer, "{N} sub-customers" on a parent, none otherwise.

        The link is a sub-customer's `parent_customer_id`, on the sale card: a parent is shown only with
        `customers.sale_info.view` at this customer's location, a sub-customer only with it at its own."""
        identity = current_identity()
        link = section_view_permission("parent_customer_id", CUSTOMER) or "customers.view"
        return family.family_of(
            request_session(),
            loaded(),
            lambda loc: identity.can("customers.view", loc),
            lambda loc: identity.can(link, loc),
        )


HAS_CHILDREN = "The customer has sub-customers, so it cannot become one"


@blp.route("/<int:customer_id>/parent-candidates")
class ParentCandidates(MethodView):
    @blp.read(
        "customers.modify", CustomerPageSchema, record=view_rule, query=ParentCandidateArgs, conflict=HAS_CHILDREN
    )
    def get(self, customer_id, **args):
        """Customers this one may be linked to as its parent (the Parent Customer picker), by name,
        business name, account number or customer id: top-level customers only, never itself.
        Refused (409) on a customer that has sub-customers: the hierarchy is two levels deep.
        Candidates are those of the locations where you hold `customers.sale_info.view`: the link to a
        parent is a sale-information field, and the picker leaves sub-customers out."""
        session, customer = request_session(), loaded()
        commands.require_modify(context(), customer)
        query = search.ListQuery(**args)
        shown_args = {k: v for k, v in args.items() if v is not None}
        identity = current_identity()
        link = section_view_permission("parent_customer_id", CUSTOMER) or "customers.view"
        result = family.parent_candidates(session, customer, query, visibility().within(identity.location_filter(link)))
        tags = result.tags
        items = [
            present.list_item(c, tags.get(c.id, []) if identity.can("tags.view", c.location_id) else None)
            for c in result.rows
        ]
        return result.body(items), 200, result.headers(request.path, shown_args)
