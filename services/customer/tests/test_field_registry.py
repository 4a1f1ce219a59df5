"""The field registry: every field of the record declared once, everything else derived from it."""

import os
import subprocess
import sys
from pathlib import Path

from vigil_customer import access, present, record, registry
from vigil_customer.models import Customer
from vigil_customer.schemas import CustomerCreateSchema, CustomerPatchSchema, CustomerSchema

HERE = Path(__file__).parent


def test_every_field_has_its_columns_and_its_place_in_the_schemas():
    table = Customer.__table__
    for field in registry.FIELDS:
        assert set(field.columns()) <= set(table.c.keys()), field.name
        shown = field.name in CustomerSchema().fields
        assert shown, field.name
        writable = field.name in CustomerPatchSchema().fields
        assert writable == (field.writable == registry.ALWAYS), field.name
        assert (field.name in CustomerCreateSchema().fields) == (field.writable != registry.NEVER), field.name
        assert field.sections.customer or field.sections.lead, field.name
        assert (
            field.name in access.fields_of(registry.CUSTOMER) + access.fields_of(registry.LEAD)
            or field.sections.customer is None
        )
    assert set(access.CONFIDENTIAL) == set(record.ENCRYPTED)
    assert set(present.LIST_FIELDS) <= set(CustomerSchema().fields)


def test_a_new_field_is_one_registry_line(tmp_path):
    """Runs ``added_field/added_field_checks.py`` in its own pytest process, where two fields are
    added to the registry before the application is built (a mapped class cannot lose a column
    again, so the rest of this suite keeps the real record): the schemas, the OpenAPI document,
    section permissions, masking, history and copies all follow."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "added_field"), str(HERE), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "added_field_plugin",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(HERE.parent),
            "--confcutdir",
            str(HERE),
            str(HERE / "added_field" / "added_field_checks.py"),
        ],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "5 passed" in result.stdout, result.stdout[-3000:]
