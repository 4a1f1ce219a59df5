"""Password hashing: production keeps its Argon2id cost; cheap parameters are for tests only."""

import dataclasses

import pytest
from argon2 import PasswordHasher, extract_parameters, profiles

from vigil_gateway.passwords import FAST_FOR_TESTS, STANDARD, PasswordHashing, Passwords
from vigil_gateway.settings import GatewaySettings
from vigil_shared.config import ConfigError, Settings
from vigil_shared.testing import TEST_SECRET

SECRET_KEY = "gateway-test-secret-key-0123456789abcdef"


def _settings(monkeypatch, environment: str = "development", **overrides) -> GatewaySettings:
    monkeypatch.setenv("VIGIL_ENV", environment)
    base = Settings.from_env("gateway", internal_secret=TEST_SECRET)
    return GatewaySettings.from_env(base=base, secret_key=SECRET_KEY, **overrides)


def test_production_parameters_are_what_they_were():
    """argon2-cffi's RFC 9106 low-memory profile (t=3, 64 MiB, p=4, 32-byte hash, 16-byte salt) or stronger."""
    assert STANDARD.at_least(PasswordHashing(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16))
    low_memory = profiles.RFC_9106_LOW_MEMORY
    assert STANDARD.at_least(
        PasswordHashing(
            low_memory.time_cost,
            low_memory.memory_cost,
            low_memory.parallelism,
            low_memory.hash_len,
            low_memory.salt_len,
        )
    )
    defaults = PasswordHasher()
    assert STANDARD.at_least(
        PasswordHashing(
            defaults.time_cost, defaults.memory_cost, defaults.parallelism, defaults.hash_len, defaults.salt_len
        )
    )


def test_the_default_settings_hash_with_the_production_parameters(monkeypatch):
    monkeypatch.delenv("VIGIL_PASSWORD_HASHING", raising=False)
    settings = _settings(monkeypatch, "production")
    assert settings.password_hashing == STANDARD
    stored = Passwords(settings.password_hashing).hash("s3cret")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert extract_parameters(stored).memory_cost == STANDARD.memory_cost


def test_cheap_parameters_are_refused_in_production(monkeypatch):
    monkeypatch.setenv("VIGIL_PASSWORD_HASHING", "fast-for-tests")
    with pytest.raises(ConfigError, match="tests only"):
        _settings(monkeypatch, "production")
    monkeypatch.delenv("VIGIL_PASSWORD_HASHING")
    with pytest.raises(ConfigError, match="tests only"):
        _settings(monkeypatch, "production", password_hashing=FAST_FOR_TESTS)
    with pytest.raises(ConfigError, match="tests only"):
        _settings(monkeypatch, "production", password_hashing=dataclasses.replace(STANDARD, memory_cost=1024))


def test_cheap_parameters_can_be_chosen_outside_production(monkeypatch):
    monkeypatch.setenv("VIGIL_PASSWORD_HASHING", "fast-for-tests")
    assert _settings(monkeypatch).password_hashing == FAST_FOR_TESTS
    monkeypatch.setenv("VIGIL_PASSWORD_HASHING", "cheap")
    with pytest.raises(ConfigError, match="VIGIL_PASSWORD_HASHING"):
        _settings(monkeypatch)


def test_hashes_verify_across_parameters_and_weaker_ones_are_upgraded():
    fast, standard = Passwords(FAST_FOR_TESTS), Passwords(STANDARD)
    cheap_hash = fast.hash("correct horse")
    assert fast.matches(cheap_hash, "correct horse") and not fast.matches(cheap_hash, "wrong")
    assert standard.matches(cheap_hash, "correct horse")  # a stored hash carries its own parameters
    assert standard.needs_rehash(cheap_hash) and not fast.needs_rehash(cheap_hash)
    assert not fast.matches(None, "anything")  # an unknown user never matches
    assert not fast.matches("not-a-hash", "anything")
