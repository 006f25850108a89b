"""Tenants' secrets at rest: sealed with AES-256-GCM before they reach PostgreSQL.

The WeCom credentials a tenant hands us (the app secret, the callback Token and
EncodingAESKey) let whoever holds them act as the brand towards its customers. A database dump,
a replica or a backup must not carry them readable, so the services store them sealed::

    sealed:v1:<key id>:<base64url(nonce | ciphertext | tag)>

Keys come from ``SCRM_SECRETS_KEYS`` (:class:`~scrm_shared.config.PlatformSettings`):
``id:base64-of-32-bytes`` entries separated by commas, the first one sealing, all of them
opening. Each value is bound to where it is stored (``SealedColumn.context``: table, column and
tenant as the cipher's associated data), so a sealed secret copied into another tenant's row, or
into another column, does not open.

Rotation: put a new key first and keep the old ones after it; at start-up each service re-seals
what its :class:`SealedColumn` s hold under an older key, or in plaintext (values stored before
sealing existed), with the first key (:func:`reseal`). Once every service has started with the
new key, the old one can go. A stored value that no configured key opens is an error
(:class:`SealedError`), never passed on as if it were the secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "PREFIX",
    "SealedColumn",
    "SealedError",
    "SecretBox",
    "new_key",
    "reseal",
]

log = logging.getLogger(__name__)

PREFIX = "sealed:v1:"
_NONCE = 12
_KEY_BYTES = 32
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


class SealedError(ValueError):
    """A stored secret cannot be opened: unknown key id, wrong key, altered, or moved."""


def new_key() -> str:
    """A fresh key as ``SCRM_SECRETS_KEYS`` takes it (without its id)."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode()


class SecretBox:
    """Seals and opens secrets with a key ring (the first key seals)."""

    __slots__ = ("_ciphers", "_current")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        ciphers: dict[str, AESGCM] = {}
        for kid, key in keys:
            if not kid or ":" in kid or "," in kid:
                raise ValueError(f"key id {kid!r}: not empty, without ':' or ','")
            if kid in ciphers:
                raise ValueError(f"key id {kid!r} appears twice")
            if len(key) != _KEY_BYTES:
                raise ValueError(f"key {kid!r} has {len(key)} bytes, AES-256 needs {_KEY_BYTES}")
            ciphers[kid] = AESGCM(key)
        self._ciphers = ciphers
        self._current = keys[0][0]

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """The ring of ``SCRM_SECRETS_KEYS``: ``id:base64key[,id:base64key...]``."""
        keys = []
        for n, entry in enumerate(e.strip() for e in value.split(",")):
            kid, sep, encoded = entry.partition(":")
            if not sep:
                raise ValueError(f"SCRM_SECRETS_KEYS entry {n + 1}: expected id:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"SCRM_SECRETS_KEYS entry {n + 1} ({kid}): not base64") from exc
            keys.append((kid.strip(), key))
        return cls(keys)

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return self._current

    def seal(self, secret: str, *, context: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self._current].encrypt(nonce, secret.encode(), context.encode())
        return f"{PREFIX}{self._current}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, stored: str, *, context: str) -> str:
        """The secret of a stored value; a value stored before sealing existed is returned as is
        (:func:`reseal` seals it at the next start)."""
        if not stored.startswith(PREFIX):
            return stored
        kid, sep, body = stored[len(PREFIX) :].partition(":")
        cipher = self._ciphers.get(kid)
        if not sep or cipher is None:
            raise SealedError(f"sealed with key {kid!r}, which SCRM_SECRETS_KEYS does not hold")
        try:
            raw = base64.urlsafe_b64decode(body)
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise SealedError(f"a value sealed with key {kid!r} does not open for {context}") from exc

    @property
    def current_prefix(self) -> str:
        """How every value sealed with the sealing key begins."""
        return f"{PREFIX}{self._current}:"

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is sealed with the sealing key (nothing to re-seal)."""
        return stored.startswith(self.current_prefix)


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A text column holding sealed secrets, one row per tenant (``key`` is the tenant id)."""

    table: str
    column: str
    key: str = "tenant_id"

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.key):
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not a plain SQL identifier")

    def statements(self) -> tuple[str, str]:
        """:func:`reseal`'s statements: the values not sealed with the key ``$1`` names (a LIKE
        pattern), and the compare-and-set of one value. The identifiers are checked above."""
        t, c, k = self.table, self.column, self.key
        return (
            f'SELECT "{k}" AS k, "{c}" AS v FROM "{t}" WHERE "{c}" <> \'\' AND "{c}" NOT LIKE $1',  # noqa: S608
            f'UPDATE "{t}" SET "{c}" = $3 WHERE "{k}" = $1 AND "{c}" = $2',  # noqa: S608
        )

    def context(self, tenant_id: str) -> str:
        return f"{self.table}.{self.column}:{tenant_id}"

    def seal(self, box: SecretBox, tenant_id: str, secret: str) -> str:
        return box.seal(secret, context=self.context(tenant_id))

    def open(self, box: SecretBox, tenant_id: str, stored: str) -> str:
        return box.open(stored, context=self.context(tenant_id))

    def open_optional(self, box: SecretBox, tenant_id: str, stored: str | None) -> str | None:
        return None if stored is None else self.open(box, tenant_id, stored)


async def reseal(db: Executor, box: SecretBox, columns: Iterable[SealedColumn]) -> Mapping[str, int]:
    """Seal with the current key what ``columns`` hold in plaintext or under an older key;
    returns how many values per ``table.column`` were re-sealed.

    Each value is replaced only if it is still the one read (a concurrent writer, or another
    replica re-sealing at the same time, wins), so running it anywhere, any number of times, is
    safe. A value no key of the ring opens is logged and left as it is. Identifiers come from the services' own :class:`SealedColumn` constants, never from
    input.
    """
    counts: dict[str, int] = {}
    for col in columns:
        select, update = col.statements()
        n = 0
        for row in await db.fetch(select, f"{box.current_prefix}%"):
            try:
                secret = col.open(box, row["k"], row["v"])
            except SealedError as exc:
                # One tenant's unreadable value must not keep the service from starting.
                log.error("secret cannot be re-sealed: %s", exc, extra={"tenant_id": row["k"]})
                continue
            status = await db.execute(update, row["k"], row["v"], col.seal(box, row["k"], secret))
            n += status == "UPDATE 1"
        if n:
            log.info("secrets re-sealed", extra={"column": f"{col.table}.{col.column}", "count": n})
        counts[f"{col.table}.{col.column}"] = n
    return counts
