"""Files of a record, and admin-defined custom fields."""

import io

from helpers import create, customer, lead

from vigil_customer import files as files_domain
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with, unknown_path

PDF = b"%PDF-1.7\n" + b"x" * 2000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def upload(api, customer_id, content, filename="plan.pdf", content_type="application/pdf", **form):
    data = {"file": (io.BytesIO(content), filename, content_type)} | form
    return api.post(f"/api/v1/customers/{customer_id}/files", data=data, content_type="multipart/form-data")


# --- files ----------------------------------------------------------------------------------------


def test_upload_list_download_delete(api, runtime):
    record = create(api)
    uploaded = upload(api, record["id"], PDF, filename="../../etc/site plan.pdf", description="Site map")
    assert uploaded.status_code == 201, uploaded.json
    item = uploaded.json
    assert item["filename"] == "site plan.pdf" and item["size"] == len(PDF) and item["description"] == "Site map"
    assert item["content_type"] == "application/pdf" and len(item["sha256"]) == 64
    listed = api.get(f"/api/v1/customers/{record['id']}/files").json
    assert listed["total"] == 1 and listed["items"][0]["id"] == item["id"]
    downloaded = api.get(f"/api/v1/customers/{record['id']}/files/{item['id']}/content")
    assert downloaded.status_code == 200 and downloaded.data == PDF
    assert downloaded.headers["Content-Type"] == "application/pdf"
    assert "attachment" in downloaded.headers["Content-Disposition"]
    assert downloaded.headers["X-Content-Type-Options"] == "nosniff"
    with runtime_app(api):
        assert any(files_domain.var_dir().joinpath("customer-files").rglob("*"))
    assert uploaded.headers["ETag"] == api.get(f"/api/v1/customers/{record['id']}/files/{item['id']}").headers["ETag"]
    stale = api.delete(f"/api/v1/customers/{record['id']}/files/{item['id']}", headers={"If-Match": '"0.0"'})
    assert stale.status_code == 412
    assert (
        api.delete(
            f"/api/v1/customers/{record['id']}/files/{item['id']}", headers={"If-Match": uploaded.headers["ETag"]}
        ).status_code
        == 204
    )
    assert api.get(f"/api/v1/customers/{record['id']}/files/{item['id']}").status_code == 404
    actions = [e["action"] for e in api.get(f"/api/v1/customers/{record['id']}/history").json["items"]]
    assert actions[:2] == ["file_delete", "file_add"]


def runtime_app(api):
    return api._client.application.app_context()


def test_a_files_bytes_are_encrypted_at_rest_and_read_back_whole(api, runtime):
    """Dealers upload credit applications and signed contracts: a file holding an SSN was written to disk
    as it came ("no confidential value at rest in plaintext: not in ... files"). Each chunk is now a
    Fernet token under the service's keys; the download, its size and its sha256 are the original's."""
    record = create(api)
    secret = b"Credit application\nSSN: 219-09-9998\nDOB: 1970-01-01\n"
    content = secret + b"z" * (200 * 1024)  # several chunks
    item = upload(api, record["id"], content, "application.txt", "text/plain").json
    with runtime_app(api):
        stored = [p.read_bytes() for p in files_domain.var_dir().joinpath("customer-files").rglob("*") if p.is_file()]
    assert stored and all(b"219-09-9998" not in data and b"zzzz" not in data for data in stored if data)
    downloaded = api.get(f"/api/v1/customers/{record['id']}/files/{item['id']}/content")
    assert downloaded.status_code == 200 and downloaded.data == content
    assert item["size"] == len(content) and downloaded.headers["Content-Length"] == str(len(content))


def test_a_file_stored_before_encryption_is_still_read(api, runtime):
    record = create(api)
    item = upload(api, record["id"], b"old plain words\n", "old.txt", "text/plain").json
    with runtime_app(api):
        store = files_domain.file_store()
        key = files_domain.get_file(runtime.db.new_session(), record["id"], item["id"]).storage_key
        store._path(key).write_bytes(b"old plain words\n")  # as an earlier version wrote it
    assert api.get(f"/api/v1/customers/{record['id']}/files/{item['id']}/content").data == b"old plain words\n"


def test_content_types_are_checked_against_the_bytes(api):
    record = create(api)
    assert upload(api, record["id"], PNG, "photo.png", "image/png").status_code == 201
    assert upload(api, record["id"], b"plain words\n", "notes.txt", "text/plain").status_code == 201
    disguised = upload(api, record["id"], b"MZ\x90\x00 not a pdf", "virus.pdf", "application/pdf")
    assert disguised.status_code == 415 and "file" in disguised.json["errors"]
    refused = upload(api, record["id"], b"#!/bin/sh", "run.sh", "application/x-sh")
    assert refused.status_code == 415
    assert upload(api, record["id"], b"", "empty.txt", "text/plain").status_code == 422
    missing = api.post(
        f"/api/v1/customers/{record['id']}/files", data={"description": "x"}, content_type="multipart/form-data"
    )
    assert missing.status_code == 422 and "file" in missing.json["errors"]


def test_the_size_limit(api, monkeypatch):
    record = create(api)
    monkeypatch.setattr(files_domain, "MAX_FILE_BYTES", 1000)
    too_big = upload(api, record["id"], PDF)
    assert too_big.status_code == 413 and too_big.headers["Content-Type"] == "application/problem+json"
    assert api.get(f"/api/v1/customers/{record['id']}/files").json["total"] == 0


def test_files_need_their_permission_at_the_records_location(api):
    here = create(api)
    there = create(api, customer(location_id=2))
    viewer = api.as_(identity_with("files.view"))
    assert viewer.get(f"/api/v1/customers/{here['id']}/files").status_code == 200
    files = f"/api/v1/customers/{there['id']}/files"
    assert_hidden(viewer.get(files), viewer.get(unknown_path(files, there["id"])))
    assert upload(viewer, here["id"], PDF).status_code == 403  # files.modify held nowhere
    uploader = api.as_(identity_with("files.modify", "files.view"))
    assert_hidden(upload(uploader, there["id"], PDF), upload(uploader, UNKNOWN_ID, PDF))


def test_deleting_the_customer_removes_its_files(api):
    record = create(api)
    upload(api, record["id"], PDF)
    with runtime_app(api):
        root = files_domain.var_dir() / "customer-files"
        before = {p for p in root.rglob("*") if p.is_file()}
        assert api.delete(f"/api/v1/customers/{record['id']}").status_code == 204
        after = {p for p in root.rglob("*") if p.is_file()}
    assert len(before - after) == 1


# --- custom fields --------------------------------------------------------------------------------


def define(api, **fields):
    response = api.post("/api/v1/custom-fields", json=fields)
    assert response.status_code == 201, response.json
    return response.json


def test_defining_fields_needs_catalogs_manage(api):
    clerk = api.as_(identity_with("customers.view"))
    assert clerk.post("/api/v1/custom-fields", json={"key": "x", "label": "X", "type": "text"}).status_code == 403
    define(api, key="gate_code", label="Gate code", type="text")
    assert clerk.get("/api/v1/custom-fields").json["items"][0]["key"] == "gate_code"
    assert api.post("/api/v1/custom-fields", json={"key": "gate_code", "label": "X", "type": "text"}).status_code == 409
    assert api.post("/api/v1/custom-fields", json={"key": "Bad Key", "label": "X", "type": "text"}).status_code == 422
    assert api.post("/api/v1/custom-fields", json={"key": "s", "label": "S", "type": "select"}).status_code == 422
    assert (
        api.post("/api/v1/custom-fields", json={"key": "t", "label": "T", "type": "text", "options": ["a"]}).status_code
        == 422
    )


def test_values_are_validated_per_type_and_kind(api):
    define(api, key="gate_code", label="Gate code", type="text")
    define(api, key="dogs", label="Dogs", type="number")
    define(api, key="permit_expires", label="Permit expires", type="date")
    define(api, key="panel", label="Panel", type="select", options=["DSC", "Honeywell"])
    define(api, key="pets", label="Pets", type="checkbox")
    define(api, key="lead_only", label="Lead only", type="text", applies_to="lead")
    good = {"gate_code": "1234#", "dogs": 2, "permit_expires": "2027-01-31", "panel": "DSC", "pets": True}
    record = create(api, customer(custom_fields=good))
    assert record["custom_fields"] == good
    bad = api.post(
        "/api/v1/customers",
        json=customer(
            custom_fields={
                "dogs": "two",
                "permit_expires": "31/01/2027",
                "panel": "ADT",
                "pets": "yes",
                "lead_only": "x",
                "nope": 1,
            }
        ),
    )
    assert bad.status_code == 422
    assert set(bad.json["errors"]) == {
        "custom_fields.dogs",
        "custom_fields.permit_expires",
        "custom_fields.panel",
        "custom_fields.pets",
        "custom_fields.lead_only",
        "custom_fields.nope",
    }
    patched = api.patch(f"/api/v1/customers/{record['id']}", json={"custom_fields": {"dogs": 3, "gate_code": None}})
    assert patched.json["custom_fields"] == {"dogs": 3, "permit_expires": "2027-01-31", "panel": "DSC", "pets": True}
    history = api.get(f"/api/v1/customers/{record['id']}/history?field=custom_fields").json["items"]
    assert history[0]["action"] == "update"


def test_required_custom_fields(api):
    field = define(api, key="contract_no", label="Contract number", type="text", required=True, applies_to="customer")
    missing = api.post("/api/v1/customers", json=customer())
    assert missing.status_code == 422 and missing.json["errors"] == {"custom_fields.contract_no": ["Required."]}
    assert api.post("/api/v1/customers", json=lead()).status_code == 201, "the field is for customers only"
    record = create(api, customer(custom_fields={"contract_no": "C-1"}))
    cleared = api.patch(f"/api/v1/customers/{record['id']}", json={"custom_fields": {"contract_no": None}})
    assert cleared.status_code == 422
    api.patch(f"/api/v1/custom-fields/{field['id']}", json={"active": False})
    assert api.post("/api/v1/customers?allow_duplicates=true", json=customer()).status_code == 201


def test_definition_changes(api):
    field = define(api, key="panel", label="Panel", type="select", options=["DSC", "Honeywell"])
    create(api, customer(custom_fields={"panel": "DSC"}))
    in_use = api.patch(f"/api/v1/custom-fields/{field['id']}", json={"options": ["Honeywell"]})
    assert in_use.status_code == 409
    widened = api.patch(
        f"/api/v1/custom-fields/{field['id']}", json={"options": ["DSC", "Honeywell", "Qolsys"], "label": "Alarm panel"}
    )
    assert widened.status_code == 200 and widened.json["label"] == "Alarm panel"
    assert api.patch(f"/api/v1/custom-fields/{field['id']}", json={"type": "text"}).status_code == 422
    assert api.delete(f"/api/v1/custom-fields/{field['id']}").status_code == 204
    assert api.get("/api/v1/custom-fields").json["items"] == []
