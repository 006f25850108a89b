"""The client's cache of access_tokens: one slot per corp and secret."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field


@dataclass
class Token:
    value: str
    expires_at: float


@dataclass
class TokenSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: Token | None = None


def token_key(corp_id: str, secret: str) -> tuple[str, str]:
    # Per corp, and per secret too: a tenant that rotates its secret must not keep using a token
    # of the old one. Only a digest of the secret is kept as a key.
    return corp_id, hashlib.sha256(secret.encode()).hexdigest()[:16]
