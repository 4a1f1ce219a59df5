"""Files of a record: `files.view` to list and download, `files.modify` to upload and delete.

Uploads are `multipart/form-data` with a `file` part (and an optional `description`); the size
limit is the smaller of 10 MiB and `VIGIL_MAX_BODY_BYTES`, and the declared type must be an
accepted one that the file's first bytes agree with.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, etag_of, paginate
from vigil_shared.idempotency import idempotent
from vigil_shared.web import request_session, requires

from .. import commands
from .. import files as domain
from ..child_schemas import FileFormSchema, FilePageSchema, FileSchema, FileUploadSchema
from .common import A_CUSTOMER, context, customer_rule, if_match, loaded, tab_rule

blp = Blueprint("customer_files", __name__, url_prefix=f"{A_CUSTOMER}/files", description="Files of a customer or lead")
UPLOAD_ENDPOINT = "customer_files.Files"
FILE_VERSION = 1  # a stored file never changes: to replace one, upload another


@blp.route("")
class Files(MethodView):
    @blp.read("files.view", FilePageSchema, rule=tab_rule, query=PaginationArgs)
    def get(self, customer_id, page, per_page):
        """The record's files, newest first."""
        result = paginate(request_session(), domain.list_statement(customer_id), page, per_page)
        return result.body(), 200, result.headers()

    @requires("files.modify")
    @customer_rule(permission="files.modify")
    @idempotent
    @blp.arguments(FileUploadSchema, location="files")
    @blp.arguments(FileFormSchema, location="form")
    @blp.response(201, FileSchema)
    @blp.alt_response(413, description="The file is larger than the limit")
    @blp.alt_response(415, description="The type is not accepted, or the contents do not match it")
    def post(self, upload, form, customer_id):
        """Upload a file (multipart/form-data: `file`, optional `description`)."""
        item = commands.add_file(context(), loaded(), upload["file"], form.get("description"))
        return (
            item,
            201,
            {
                "Location": url_for("customer_files.FileItem", customer_id=customer_id, file_id=item.id),
                "ETag": etag_of(item.id, FILE_VERSION),
            },
        )


@blp.route("/<int:file_id>")
class FileItem(MethodView):
    @blp.read("files.view", FileSchema, rule=tab_rule)
    def get(self, customer_id, file_id):
        """A file's details; its bytes are at `…/content`."""
        item = domain.get_file(request_session(), customer_id, file_id)
        return item, 200, {"ETag": etag_of(item.id, FILE_VERSION)}

    @blp.remove("files.modify", rule=tab_rule, stale="`If-Match` names another file version; nothing was deleted")
    def delete(self, customer_id, file_id):
        """Delete a file (the record's history keeps its name)."""
        commands.delete_file(context(if_match()), loaded(), file_id, FILE_VERSION)
        return None


@blp.route("/<int:file_id>/content")
class FileContent(MethodView):
    @requires("files.view")
    @customer_rule(permission="files.view")
    @blp.response(200, description="The file's bytes, as an attachment", content_type="application/octet-stream")
    def get(self, customer_id, file_id):
        """Download a file."""
        item = domain.get_file(request_session(), customer_id, file_id)
        response = Response(
            domain.file_store().open(item.storage_key), mimetype=item.content_type, direct_passthrough=True
        )
        response.headers["Content-Length"] = str(item.size)
        response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(item.filename)}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["ETag"] = f'"{item.sha256}"'
        return response
