"""Sealing tenants' secrets: round trip, binding to where a value is stored, rotation, the key
ring setting, and the settings' refusal of a prod stack without its own keys."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from scrm_shared.config import DEV_SECRETS_KEYS, PlatformSettings
from scrm_shared.secrets import PREFIX, SealedColumn, SealedError, SecretBox, new_key

K1, K2 = new_key(), new_key()
SECRET = SealedColumn("wecom_credentials", "secret")


def test_a_sealed_secret_opens_to_itself_and_shows_nothing_of_it():
    box = SecretBox.from_setting(f"k1:{K1}")
    sealed = SECRET.seal(box, "acme", "app-secret-1")
    assert sealed.startswith(f"{PREFIX}k1:")
    assert "app-secret-1" not in sealed
    assert SECRET.open(box, "acme", sealed) == "app-secret-1"
    # A fresh nonce each time: equal secrets do not give equal stored values.
    assert SECRET.seal(box, "acme", "app-secret-1") != sealed


def test_a_sealed_secret_opens_only_where_it_was_stored():
    box = SecretBox.from_setting(f"k1:{K1}")
    sealed = SECRET.seal(box, "acme", "app-secret-1")
    with pytest.raises(SealedError):
        SECRET.open(box, "other-tenant", sealed)  # copied into another tenant's row
    with pytest.raises(SealedError):
        SealedColumn("wecom_config", "token").open(box, "acme", sealed)  # into another column


def test_an_altered_or_foreign_value_does_not_open():
    box = SecretBox.from_setting(f"k1:{K1}")
    sealed = SECRET.seal(box, "acme", "app-secret-1")
    body = bytearray(base64.urlsafe_b64decode(sealed.rsplit(":", 1)[1]))
    body[-1] ^= 1
    with pytest.raises(SealedError):
        SECRET.open(
            box, "acme", sealed.rsplit(":", 1)[0] + ":" + base64.urlsafe_b64encode(bytes(body)).decode()
        )
    with pytest.raises(SealedError, match="does not hold"):
        SECRET.open(box, "acme", f"{PREFIX}k9:" + sealed.rsplit(":", 1)[1])
    with pytest.raises(SealedError):
        SECRET.open(SecretBox.from_setting(f"k1:{K2}"), "acme", sealed)  # same id, another key


def test_rotation_older_keys_open_the_first_seals():
    old = SecretBox.from_setting(f"k1:{K1}")
    sealed = SECRET.seal(old, "acme", "app-secret-1")
    ring = SecretBox.from_setting(f"k2:{K2}, k1:{K1}")
    assert ring.current == "k2"
    assert SECRET.open(ring, "acme", sealed) == "app-secret-1"
    assert not ring.is_current(sealed)
    assert ring.is_current(SECRET.seal(ring, "acme", "app-secret-1"))


def test_a_value_stored_before_sealing_reads_as_it_is():
    box = SecretBox.from_setting(f"k1:{K1}")
    assert SECRET.open(box, "acme", "plain-old-secret") == "plain-old-secret"
    assert not box.is_current("plain-old-secret")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("k1", "expected id:base64key"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "AES-256 needs 32"),
        (f"k1:{K1},k1:{K2}", "appears twice"),
        (f":{K1}", "not empty"),
    ],
)
def test_a_malformed_key_ring_is_refused(setting: str, message: str):
    with pytest.raises(ValueError, match=message):
        SecretBox.from_setting(setting)


def test_sealed_columns_take_plain_identifiers_only():
    with pytest.raises(ValueError, match="identifier"):
        SealedColumn("wecom_config; DROP TABLE x", "secret")


def test_settings_dev_key_outside_prod_own_keys_required_in_prod():
    dev = PlatformSettings(env="dev")
    assert dev.secrets_keys is not None and dev.secrets_keys.get_secret_value() == DEV_SECRETS_KEYS
    assert dev.secret_box.current == "dev"
    with pytest.raises(ValidationError, match="SCRM_SECRETS_KEYS is required"):
        PlatformSettings(env="prod", jwt_secret="x" * 32)
    with pytest.raises(ValidationError, match="must not be the dev key"):
        PlatformSettings(env="prod", jwt_secret="x" * 32, secrets_keys=DEV_SECRETS_KEYS)
    with pytest.raises(ValidationError, match="not base64"):
        PlatformSettings(secrets_keys="k1:%%%")
    prod = PlatformSettings(env="prod", jwt_secret="x" * 32, secrets_keys=f"k2:{K2},k1:{K1}")
    assert prod.secret_box.current == "k2"
