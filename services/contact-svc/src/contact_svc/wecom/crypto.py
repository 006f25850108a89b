"""WeCom's callback crypto (企业微信 "加解密方案说明", the WXBizMsgCrypt scheme).

- ``msg_signature`` = sha1 hex of the sorted strings [token, timestamp, nonce, msg_encrypt],
  concatenated.
- AES-256-CBC with key = base64decode(EncodingAESKey + "="), IV = key[:16], PKCS#7 padding to a
  multiple of **32** bytes (not AES's 16).
- plaintext = 16 random bytes | 4-byte big-endian length of msg | msg | receive_id, where
  receive_id is the corp_id for a self-built app's callbacks.

Pure functions over bytes and strings (no I/O), used by the callback route, the tests and the
benchmark. Every failure raises a subclass of :class:`WeComCryptoError` whose message never
quotes the ciphertext or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK_SIZE",
    "ENCODING_AES_KEY_PATTERN",
    "DecryptError",
    "ReceiveIdMismatch",
    "SignatureMismatch",
    "WeComCrypto",
    "WeComCryptoError",
    "aes_key",
    "decrypt",
    "encrypt",
    "signature",
    "verify_signature",
]

BLOCK_SIZE = 32
"""WeCom pads to multiples of 32 bytes; a 16-byte PKCS#7 unpadder would reject its padding."""

ENCODING_AES_KEY_PATTERN = r"^[A-Za-z0-9]{43}$"
"""An EncodingAESKey: 43 characters from a-z, A-Z, 0-9 (base64 of 32 bytes without the '=')."""

_ENCODING_AES_KEY = re.compile(ENCODING_AES_KEY_PATTERN)
_RANDOM_BYTES = 16
_LENGTH_BYTES = 4


class WeComCryptoError(Exception):
    """A callback failed verification or decryption."""


class SignatureMismatch(WeComCryptoError):
    """``msg_signature`` does not match: the request is not from WeCom (or the token is wrong)."""


class DecryptError(WeComCryptoError):
    """The ciphertext is not base64, not whole AES blocks, badly padded or badly framed."""


class ReceiveIdMismatch(WeComCryptoError):
    """The message decrypted, but was meant for another corp (receive id)."""


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of an EncodingAESKey; ``ValueError`` unless it is 43 chars of [A-Za-z0-9]."""
    if not isinstance(encoding_aes_key, str) or not _ENCODING_AES_KEY.fullmatch(encoding_aes_key):
        raise ValueError("EncodingAESKey must be exactly 43 characters of A-Z, a-z and 0-9")
    key = base64.b64decode(encoding_aes_key + "=")
    assert len(key) == 32  # 43 base64 characters + '=' always decode to 32 bytes
    return key


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """WeCom's msg_signature: sha1 hex of the four strings sorted, then concatenated."""
    joined = "".join(sorted((token, timestamp, nonce, encrypted)))
    # sha1 is WeCom's protocol, not our choice; it authenticates, it does not protect secrets.
    return hashlib.sha1(joined.encode("utf-8"), usedforsecurity=False).hexdigest()


def verify_signature(token: str, timestamp: str, nonce: str, encrypted: str, msg_signature: str) -> None:
    """Raise :class:`SignatureMismatch` unless ``msg_signature`` is right (constant-time compare)."""
    expected = signature(token, timestamp, nonce, encrypted)
    # compare_digest on ASCII bytes: no early exit that would leak how many characters matched.
    if not hmac.compare_digest(expected.encode("ascii"), msg_signature.lower().encode("utf-8")):
        raise SignatureMismatch("msg_signature does not match")


def encrypt(key: bytes, msg: bytes, receive_id: str, *, random_prefix: bytes | None = None) -> str:
    """Encrypt ``msg`` for ``receive_id`` as WeCom does; returns the base64 ciphertext.

    ``random_prefix`` (16 bytes) defaults to fresh random bytes; tests pass a fixed one to get a
    deterministic ciphertext.
    """
    prefix = os.urandom(_RANDOM_BYTES) if random_prefix is None else random_prefix
    if len(prefix) != _RANDOM_BYTES:
        raise ValueError(f"random_prefix must be {_RANDOM_BYTES} bytes")
    plain = prefix + len(msg).to_bytes(_LENGTH_BYTES, "big") + msg + receive_id.encode("utf-8")
    pad = BLOCK_SIZE - len(plain) % BLOCK_SIZE
    plain += bytes([pad]) * pad
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


def decrypt(key: bytes, encrypted: str) -> tuple[bytes, str]:
    """Decrypt WeCom's base64 ciphertext; returns ``(msg, receive_id)``.

    Raises :class:`DecryptError` for anything but a well-formed ciphertext: bad base64, a length
    that is not whole 32-byte blocks, bad PKCS#7 padding or a length field beyond the plaintext.
    """
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("ciphertext is not valid base64") from None
    if not raw or len(raw) % BLOCK_SIZE:
        raise DecryptError(f"ciphertext is not a whole number of {BLOCK_SIZE}-byte blocks")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    body = _unpad(plain)
    if len(body) < _RANDOM_BYTES + _LENGTH_BYTES:
        raise DecryptError("plaintext is shorter than its header")
    length = int.from_bytes(body[_RANDOM_BYTES : _RANDOM_BYTES + _LENGTH_BYTES], "big")
    start = _RANDOM_BYTES + _LENGTH_BYTES
    if start + length > len(body):
        raise DecryptError("message length exceeds the plaintext")
    msg = body[start : start + length]
    # A garbled receive id decodes with U+FFFD, which no corp id contains: it then fails the
    # receive-id check like any other foreign id, rather than being a framing error.
    receive_id = body[start + length :].decode("utf-8", errors="replace")
    return msg, receive_id


@dataclass(frozen=True, slots=True)
class WeComCrypto:
    """One tenant's callback settings: verify, decrypt and encrypt its messages.

    ``receive_id`` is the corp_id: a message that decrypts but names another receive id is
    refused with :class:`ReceiveIdMismatch` (it was encrypted for a different corp).
    """

    token: str
    key: bytes
    receive_id: str

    @classmethod
    def from_settings(cls, token: str, encoding_aes_key: str, receive_id: str) -> WeComCrypto:
        """Build from the Token, EncodingAESKey and corp_id an admin configured in WeCom."""
        return cls(token=token, key=aes_key(encoding_aes_key), receive_id=receive_id)

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> bytes:
        """Verify the signature, decrypt and check the receive id; returns the message bytes.

        The signature is checked before anything is decrypted, so an unauthenticated caller
        never learns anything from padding or framing errors.
        """
        verify_signature(self.token, timestamp, nonce, encrypted, msg_signature)
        msg, receive_id = decrypt(self.key, encrypted)
        if not hmac.compare_digest(receive_id.encode("utf-8"), self.receive_id.encode("utf-8")):
            raise ReceiveIdMismatch("message was encrypted for another receive id")
        return msg

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """WeCom's URL verification: the decrypted ``echostr``, to be returned verbatim."""
        msg = self.open(msg_signature, timestamp, nonce, echostr)
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptError("echostr is not UTF-8") from None

    def seal(
        self, msg: bytes, timestamp: str, nonce: str, *, random_prefix: bytes | None = None
    ) -> tuple[str, str]:
        """Encrypt ``msg`` for this corp; returns ``(encrypted, msg_signature)``."""
        encrypted = encrypt(self.key, msg, self.receive_id, random_prefix=random_prefix)
        return encrypted, signature(self.token, timestamp, nonce, encrypted)


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    if len(key) != 32:
        raise ValueError("WeCom's AES key is 32 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def _unpad(plain: bytes) -> bytes:
    pad = plain[-1]
    if not 1 <= pad <= BLOCK_SIZE or plain[-pad:] != bytes([pad]) * pad:
        raise DecryptError("bad PKCS#7 padding")
    return plain[:-pad]
