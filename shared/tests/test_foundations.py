
import pytest

from vigil_shared import config
from vigil_shared.config import ConfigError, Settings
from vigil_shared.errors import flatten_messages
from vigil_shared.identity import Identity, InvalidIdentity, sign_identity, verify_identity

SECRET = "k" * 40


def test_identity_round_trip_and_tampering():
    identity = Identity(subject="3", username="sam", permissions=frozenset({"customers.view"}), request_id="r1")
    token = sign_identity(identity, SECRET)
    assert verify_identity(token, SECRET) == identity
    with pytest.raises(InvalidIdentity):
        verify_identity(token, "another-secret" * 3)
    with pytest.raises(InvalidIdentity):
        verify_identity(token[:-2] + "xx", SECRET)
    expired = sign_identity(identity, SECRET, ttl_seconds=-30)
    with pytest.raises(InvalidIdentity):
        verify_identity(expired, SECRET)
    assert identity.can("customers.view") and not identity.can("customers.delete")
    assert Identity(subject="1", username="a", permissions=frozenset({"*"})).can("anything")


def test_validation_messages_flatten_to_field_names():
    nested = {"json": {"email": ["Not a valid email address."], "address": {"zip": ["Invalid."]},
                       "_schema": ["Invalid input type."]}, "query": {"page": ["Too big."]}}
    assert flatten_messages(nested) == {"email": ["Not a valid email address."], "address.zip": ["Invalid."],
                                        "_schema": ["Invalid input type."], "page": ["Too big."]}


def test_settings_refuse_to_start_without_the_internal_secret(monkeypatch):
    monkeypatch.delenv("VIGIL_INTERNAL_SECRET", raising=False)
    with pytest.raises(ConfigError):
        Settings.from_env("customer")


def test_production_needs_long_secrets(monkeypatch):
    monkeypatch.setenv("VIGIL_ENV", "production")
    with pytest.raises(ConfigError):
        Settings.from_env("customer", internal_secret="short")


def test_malformed_numbers_are_config_errors(monkeypatch):
    monkeypatch.setenv("VIGIL_CUSTOMER_PORT", "eighty")
    with pytest.raises(ConfigError):
        Settings.from_env("customer", internal_secret=SECRET)


def test_defaults_work_on_a_fresh_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_VAR_DIR", str(tmp_path))
    for name in list(config.KNOWN_SETTINGS):
        if name not in ("VIGIL_VAR_DIR",):
            monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env("property", internal_secret=SECRET)
    assert settings.database_url == f"sqlite:///{tmp_path / 'property.db'}"
    assert settings.broker_url == "filesystem://" and settings.port == 8002
    assert settings.worker_health_port == 8102 and settings.relay_health_port == 8202
    assert settings.queue_name() == "vigil.property"


def test_only_declared_settings_can_be_read():
    with pytest.raises(AssertionError):
        config.env("VIGIL_NOT_A_SETTING")
