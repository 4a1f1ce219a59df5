"""Confidential values at rest: ciphertext only, re-encrypted by `vigil-customer rotate-keys`."""

import io
from dataclasses import replace

from helpers import create, customer
from sqlalchemy import select, text

from vigil_customer.app import program
from vigil_customer.models import Customer, HistoryEntry
from vigil_shared.crypto import FieldCipher, generate_key
from vigil_shared.runtime import rotate_keys


def test_confidential_values_are_stored_encrypted(api, session):
    # codes long enough that no timestamp, id or ciphertext holds them by chance (a 4-digit one did)
    record = create(api, customer(ssn="123-45-6789", birthdate="1980-02-03", abort_code="42424242"))
    api.patch(f"/api/v1/customers/{record['id']}", json={"abort_code": "51515151"})
    raw = session.execute(text("SELECT * FROM customers")).mappings().one()
    dumped = " ".join(str(v) for v in raw.values())
    for secret in ("123-45-6789", "123456789", "1980-02-03", "42424242", "51515151"):
        assert secret not in dumped
    history = " ".join(str(v) for v in session.execute(text("SELECT * FROM customer_history")).all())
    for secret in ("123-45-6789", "42424242", "51515151"):
        assert secret not in history


def test_rotate_keys_re_encrypts_every_confidential_column(api, runtime, session):
    record = create(api, customer(ssn="123-45-6789", birthdate="1980-02-03", receiver_number="R-1"))
    api.patch(f"/api/v1/customers/{record['id']}", json={"receiver_number": "R-2"})
    old_cipher = runtime.cipher
    new_key = generate_key()
    rotated_runtime = replace(
        runtime, cipher=FieldCipher([new_key, *runtime.settings.encryption_keys], runtime.settings.blind_index_key)
    )
    count = rotate_keys(rotated_runtime, program.encrypted_columns)
    assert count == 8  # ssn, birthdate, receiver number, and five history values
    assert rotate_keys(rotated_runtime, program.encrypted_columns) == 0, "a second run has nothing to do"
    only_new = FieldCipher([new_key], runtime.settings.blind_index_key)
    session.expire_all()
    stored = session.scalars(select(Customer)).one()
    assert only_new.decrypt(stored.ssn_enc) == "123-45-6789"
    assert only_new.decrypt(stored.receiver_number_enc) == "R-2"
    entries = session.scalars(select(HistoryEntry).where(HistoryEntry.new_value_enc.isnot(None))).all()
    assert {only_new.decrypt(e.new_value_enc) for e in entries} == {"123-45-6789", "1980-02-03", "R-1", "R-2"}
    assert old_cipher is runtime.cipher


def test_rotate_keys_re_encrypts_stored_files_too(api, runtime, tmp_path):
    """``rotate-keys`` re-encrypts uploaded files under the first key (and seals one written in plaintext
    by an earlier version), so the old key can be dropped without losing a file."""
    from vigil_customer.app import reseal_files
    from vigil_customer.storage import LocalFileStore

    store = LocalFileStore(tmp_path, runtime.cipher)
    contents = b"SSN 219-09-9998\n" + b"y" * 150_000
    sealed = store.put(io.BytesIO(contents), 10**6)
    legacy = LocalFileStore(tmp_path).put(io.BytesIO(b"SSN 219-09-9997"), 100)
    new_key = generate_key()
    rotated = replace(
        runtime, cipher=FieldCipher([new_key, *runtime.settings.encryption_keys], runtime.settings.blind_index_key)
    )
    assert LocalFileStore(tmp_path, rotated.cipher).reseal() == 2
    assert LocalFileStore(tmp_path, rotated.cipher).reseal() == 0, "a second run has nothing to do"
    only_new = LocalFileStore(tmp_path, FieldCipher([new_key], runtime.settings.blind_index_key))
    assert b"".join(only_new.open(sealed.key)) == contents
    assert b"".join(only_new.open(legacy.key)) == b"SSN 219-09-9997"
    assert all(b"219-09" not in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert callable(reseal_files) and program.rotate_more is reseal_files
