"""WeCom's callback crypto against WeCom's published sample vectors, plus round trips and attacks."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from contact_svc.wecom.crypto import (
    DecryptError,
    ReceiveIdMismatch,
    SignatureMismatch,
    WeComCrypto,
    aes_key,
    decrypt,
    encrypt,
    signature,
    verify_signature,
)

# ---------------------------------------------------------------------------------------------
# Published vectors
# ---------------------------------------------------------------------------------------------

# WeCom's official Python sample of WXBizMsgCrypt (callback/Sample.py of WeCom's "加解密库"
# download, linked from developer.work.weixin.qq.com/document/path/90968 "加解密方案说明";
# mirrored at github.com/sbzhu/weworkapi_python, callback/Sample.py): 使用示例一 (verify URL)
# and 使用示例二 (decrypt a POSTed message).
SAMPLE_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
SAMPLE_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
SAMPLE_CORP_ID = "ww1436e0e65a779aee"
SAMPLE_VERIFY = {
    "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
    "timestamp": "1476416373",
    "nonce": "47744683",
    "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
}
SAMPLE_VERIFY_PLAINTEXT = "1288432023552776189"
SAMPLE_POST = {
    "msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
    "timestamp": "1476422779",
    "nonce": "1597212914",
    "encrypted": (
        "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzT"
        "tRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5j"
        "aU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX"
        "3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
    ),
}
SAMPLE_POST_PLAINTEXT = (
    "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
    "<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content>"
    "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
)

# The older sample of the same library (企业号 era, quoted by "加解密方案说明" and shipped as
# Sample.php / Sample.cpp of WXBizMsgCrypt; e.g. github.com/ming820214/oa api/Sample.php): Token
# "QDG6eK", CorpID "wx5823bf96d3bd56c7". The echostr is given URL-encoded there; decoded here.
OLD_TOKEN = "QDG6eK"
OLD_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
OLD_CORP_ID = "wx5823bf96d3bd56c7"
OLD_VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
OLD_VERIFY_PLAINTEXT = "1616140317555161061"
OLD_POST = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
    "encrypted": (
        "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911"
        "L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLx"
        "AUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9"
        "nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/u"
        "h9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
    ),
}
OLD_POST_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>"
)


@pytest.fixture
def sample() -> WeComCrypto:
    return WeComCrypto.from_settings(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


@pytest.fixture
def old_sample() -> WeComCrypto:
    return WeComCrypto.from_settings(OLD_TOKEN, OLD_AES_KEY, OLD_CORP_ID)


def test_published_url_verification_vectors(sample, old_sample):
    assert sample.verify_url(**SAMPLE_VERIFY) == SAMPLE_VERIFY_PLAINTEXT
    assert old_sample.verify_url(**OLD_VERIFY) == OLD_VERIFY_PLAINTEXT


def test_published_signatures():
    v = SAMPLE_VERIFY
    assert signature(SAMPLE_TOKEN, v["timestamp"], v["nonce"], v["echostr"]) == v["msg_signature"]
    p = SAMPLE_POST
    assert signature(SAMPLE_TOKEN, p["timestamp"], p["nonce"], p["encrypted"]) == p["msg_signature"]
    o = OLD_POST
    assert signature(OLD_TOKEN, o["timestamp"], o["nonce"], o["encrypted"]) == o["msg_signature"]


def test_published_post_vectors_decrypt(sample, old_sample):
    assert sample.open(**SAMPLE_POST).decode() == SAMPLE_POST_PLAINTEXT
    assert old_sample.open(**OLD_POST).decode() == OLD_POST_PLAINTEXT


def test_published_padding_is_to_32_byte_blocks():
    # The echostr sample (16 + 4 + 19 + 18 = 57 bytes, seven 7s) would look the same with 16-byte
    # PKCS#7; the POST sample tells them apart: 16 + 4 + 228 + 18 = 266 bytes, padded to 288 with
    # 22 bytes of 22 (16-byte PKCS#7 never pads with more than 16).
    key = aes_key(SAMPLE_AES_KEY)
    raw = base64.b64decode(SAMPLE_POST["encrypted"])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    assert plain[-1] == 22 and plain[-22:] == bytes([22]) * 22


def test_encrypt_reproduces_published_ciphertext():
    """Encrypting with the sample's own random prefix gives WeCom's ciphertext byte for byte."""
    key = aes_key(SAMPLE_AES_KEY)
    raw = base64.b64decode(SAMPLE_POST["encrypted"])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    prefix = (decryptor.update(raw) + decryptor.finalize())[:16]
    again = encrypt(key, SAMPLE_POST_PLAINTEXT.encode(), SAMPLE_CORP_ID, random_prefix=prefix)
    assert again == SAMPLE_POST["encrypted"]


def test_aes_key_is_base64_of_the_43_chars_plus_padding():
    assert aes_key(SAMPLE_AES_KEY) == base64.b64decode(SAMPLE_AES_KEY + "=")
    assert len(aes_key(SAMPLE_AES_KEY)) == 32


@pytest.mark.parametrize(
    "bad",
    [SAMPLE_AES_KEY[:-1], SAMPLE_AES_KEY + "A", SAMPLE_AES_KEY[:-1] + "+", SAMPLE_AES_KEY[:-1] + "=", ""],
)
def test_aes_key_rejects_anything_but_43_alphanumerics(bad):
    with pytest.raises(ValueError, match="43 characters"):
        aes_key(bad)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 11, 12, 13, 31, 32, 33, 43, 44, 45, 100, 4096])
def test_round_trip_every_padding_length(length):
    # With an 18-byte receive id, lengths 11..44 walk the pad through 1..32 (12 gives a full block).
    key = os.urandom(32)
    msg = os.urandom(length)
    encrypted = encrypt(key, msg, SAMPLE_CORP_ID)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert decrypt(key, encrypted) == (msg, SAMPLE_CORP_ID)


def test_round_trip_through_seal_and_open(sample):
    msg = "<xml><Content><![CDATA[欢迎光临 🌸]]></Content></xml>".encode()
    encrypted, sig = sample.seal(msg, "1700000000", "nonce123")
    assert sample.open(sig, "1700000000", "nonce123", encrypted) == msg


def test_encryption_is_randomised(sample):
    first, _ = sample.seal(b"same", "1", "n")
    second, _ = sample.seal(b"same", "1", "n")
    assert first != second


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_wrong_signature_is_refused_before_decrypting(sample):
    with pytest.raises(SignatureMismatch):
        sample.open(**{**SAMPLE_POST, "msg_signature": "0" * 40})
    with pytest.raises(SignatureMismatch):
        sample.open(**{**SAMPLE_POST, "timestamp": "1476422780"})
    with pytest.raises(SignatureMismatch):
        sample.verify_url(**{**SAMPLE_VERIFY, "nonce": "47744684"})


def test_wrong_token_is_a_signature_mismatch():
    wrong = WeComCrypto.from_settings("notTheToken", SAMPLE_AES_KEY, SAMPLE_CORP_ID)
    with pytest.raises(SignatureMismatch):
        wrong.verify_url(**SAMPLE_VERIFY)


def test_signature_is_compared_case_insensitively_but_exactly():
    v = SAMPLE_VERIFY
    verify_signature(SAMPLE_TOKEN, v["timestamp"], v["nonce"], v["echostr"], v["msg_signature"].upper())
    with pytest.raises(SignatureMismatch):
        verify_signature(SAMPLE_TOKEN, v["timestamp"], v["nonce"], v["echostr"], v["msg_signature"][:-1])


def test_wrong_receive_id_is_refused():
    other_corp = WeComCrypto.from_settings(SAMPLE_TOKEN, SAMPLE_AES_KEY, "wwOtherCorp0000000")
    with pytest.raises(ReceiveIdMismatch):
        other_corp.open(**SAMPLE_POST)
    with pytest.raises(ReceiveIdMismatch):
        other_corp.verify_url(**SAMPLE_VERIFY)


def _flip(encrypted: str, index: int, bit: int = 0x01) -> str:
    raw = bytearray(base64.b64decode(encrypted))
    raw[index] ^= bit
    return base64.b64encode(bytes(raw)).decode()


def test_tampered_ciphertext_fails_the_signature(sample):
    tampered = _flip(SAMPLE_VERIFY["echostr"], 20)
    with pytest.raises(SignatureMismatch):
        sample.verify_url(**{**SAMPLE_VERIFY, "echostr": tampered})


def test_tampered_and_re_signed_ciphertext_never_decrypts_to_a_message(sample):
    """CBC is malleable: whoever knows the token can re-sign a tampered ciphertext. The padding,
    framing and receive-id checks still refuse it (the echostr sample is 4 AES blocks: random,
    length + msg, msg + receive id, receive id + 7 bytes of padding)."""

    def resign(encrypted: str) -> dict[str, str]:
        v = SAMPLE_VERIFY
        return {
            **v,
            "echostr": encrypted,
            "msg_signature": signature(SAMPLE_TOKEN, v["timestamp"], v["nonce"], encrypted),
        }

    # Byte 47 of the ciphertext flips the last plaintext byte: padding 7 becomes 6.
    with pytest.raises(DecryptError, match="padding"):
        sample.verify_url(**resign(_flip(SAMPLE_VERIFY["echostr"], 47)))
    # Byte 34 flips a receive-id byte (and garbles block 2, which also holds receive-id bytes).
    with pytest.raises(ReceiveIdMismatch):
        sample.verify_url(**resign(_flip(SAMPLE_VERIFY["echostr"], 34)))
    # Byte 0 garbles the random prefix and flips the first byte of the length field.
    with pytest.raises(DecryptError, match="length"):
        sample.verify_url(**resign(_flip(SAMPLE_VERIFY["echostr"], 0, 0x80)))


def _raw_encrypt(key: bytes, plain: bytes) -> str:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


@pytest.mark.parametrize(
    "tail",
    [
        bytes([0]) * 32,  # pad 0 does not exist
        bytes([33]) * 32,  # more than one 32-byte block
        bytes([5]) * 31 + bytes([4]),  # claims 4, but the bytes before it are not 4s
        b"\x01" * 30 + b"\x02\x03",  # claims 3, bytes are 1, 2, 3
    ],
)
def test_bad_padding_is_refused(tail):
    key = os.urandom(32)
    with pytest.raises(DecryptError, match="padding"):
        decrypt(key, _raw_encrypt(key, os.urandom(32) + tail))


def test_16_byte_style_padding_of_a_32_byte_multiple_is_refused():
    key = os.urandom(32)
    body = os.urandom(16) + (2).to_bytes(4, "big") + b"hi" + SAMPLE_CORP_ID.encode()  # 40 bytes
    with pytest.raises(DecryptError):
        decrypt(key, _raw_encrypt(key, body + bytes([8]) * 8))  # 48 bytes: not whole 32-byte blocks


@pytest.mark.parametrize(
    ("encrypted", "why"),
    [
        ("not base64!", "base64"),
        ("", "blocks"),
        (base64.b64encode(b"x" * 16).decode(), "blocks"),
        (base64.b64encode(b"x" * 33).decode(), "blocks"),
    ],
)
def test_malformed_ciphertext_is_refused(encrypted, why):
    with pytest.raises(DecryptError, match=why):
        decrypt(os.urandom(32), encrypted)


def test_length_field_beyond_plaintext_is_refused():
    key = os.urandom(32)
    plain = os.urandom(16) + (1000).to_bytes(4, "big") + b"short" + b"corp"
    pad = 32 - len(plain) % 32
    with pytest.raises(DecryptError, match="length"):
        decrypt(key, _raw_encrypt(key, plain + bytes([pad]) * pad))


def test_errors_never_quote_the_ciphertext(sample):
    with pytest.raises(SignatureMismatch) as info:
        sample.open(**{**SAMPLE_POST, "msg_signature": "f" * 40})
    assert SAMPLE_POST["encrypted"][:20] not in str(info.value)
