"""WeCom's callback through the real HTTP endpoint: real PostgreSQL schema, real broker.

The app's outbox relay publishes what the endpoint enqueued, so accepted callbacks reach Kafka.
Kafka topics are shared by the whole session, so records are told apart by this test's tenant;
the PostgreSQL schema (archive and outbox) belongs to this test alone.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord

from contact_svc.config import ContactSettings
from contact_svc.wecom.crypto import WeComCrypto, signature
from scrm_shared.events import parse_event
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration

CREATED = 1716950000  # 2024-05-29T02:33:20Z


def random_aes_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


def change(change_type: str, corp_id: str, **fields: str) -> bytes:
    """A decrypted change_external_contact callback, as WeCom sends it."""
    extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{CREATED}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>{extra}</xml>"
    ).encode()


def envelope(encrypted: str, corp_id: str) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    ).encode()


class WeCom:
    """Plays WeCom for one tenant: signs and encrypts callbacks and POSTs them."""

    def __init__(self, client: httpx.AsyncClient, tenant: str, crypto: WeComCrypto) -> None:
        self.client = client
        self.tenant = tenant
        self.crypto = crypto
        self.corp_id = crypto.receive_id

    def request(self, plaintext: bytes, *, timestamp: str = "1716950001") -> tuple[dict[str, str], bytes]:
        nonce = str(secrets.randbelow(10**10))
        encrypted, sig = self.crypto.seal(plaintext, timestamp, nonce)
        params = {"msg_signature": sig, "timestamp": timestamp, "nonce": nonce}
        return params, envelope(encrypted, self.corp_id)

    async def post(self, plaintext: bytes) -> httpx.Response:
        params, body = self.request(plaintext)
        return await self.post_raw(params, body)

    async def post_raw(
        self, params: dict[str, str], body: bytes, tenant: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/wecom/callback/{tenant or self.tenant}",
            params=params,
            content=body,
            headers={"Content-Type": "text/xml"},
        )


@pytest_asyncio.fixture
async def wecom(client: httpx.AsyncClient, auth, tenant: str) -> WeCom:
    corp_id = f"ww{uuid.uuid4().hex[:16]}"
    token = secrets.token_hex(8)
    key = random_aes_key()
    response = await client.put(
        "/v1/wecom/config",
        json={"corp_id": corp_id, "token": token, "encoding_aes_key": key, "agent_id": 1000002},
        headers=auth(tenant, "admin"),
    )
    assert response.status_code == 200, response.text
    return WeCom(client, tenant, WeComCrypto.from_settings(token, key, corp_id))


@pytest_asyncio.fixture
async def db(pg_dsn: str, pg_schema: str, contact_app) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's schema (migrated by the app's start-up)."""
    conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        yield conn
    finally:
        await conn.close()


async def archived(db: asyncpg.Connection, tenant: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM callback_archive WHERE tenant_id = $1 ORDER BY id", tenant)


async def outbox(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT topic, key, event_id FROM outbox ORDER BY id")


async def new_records(broker, topic: str, before: int, expected: int) -> list[ConsumerRecord]:
    """The ``expected`` records published after ``before``, all of them this tenant's (exactly)."""
    records = await read_topic(broker.bootstrap, topic, before + expected, exact=True)
    ours = [r for r in records if r.key.decode().startswith(f"{broker.tenant}:")]
    assert len(ours) == expected, [r.key for r in ours]
    return ours


# ---------------------------------------------------------------------------------------------
# URL verification
# ---------------------------------------------------------------------------------------------


async def test_url_verification_answers_the_decrypted_echostr(wecom: WeCom, client: httpx.AsyncClient):
    echo = "5927782489442352469"
    # Random prefixes until the ciphertext has a '+' and a '/': they must survive the query string.
    while True:
        encrypted, sig = wecom.crypto.seal(echo.encode(), "1716950001", "1507432713")
        if "+" in encrypted and "/" in encrypted:
            break
    params = {"msg_signature": sig, "timestamp": "1716950001", "nonce": "1507432713", "echostr": encrypted}
    response = await client.get(f"/wecom/callback/{wecom.tenant}", params=params)
    assert response.status_code == 200, response.text
    assert response.text == echo
    assert response.headers["content-type"].startswith("text/plain")


async def test_url_verification_with_an_unescaped_plus(wecom: WeCom, client: httpx.AsyncClient):
    while True:
        encrypted, sig = wecom.crypto.seal(b"42", "1", "2")
        if "+" in encrypted:
            break
    # A proxy that forgot to escape '+': it arrives as a space after query decoding.
    query = f"msg_signature={sig}&timestamp=1&nonce=2&echostr={encrypted.replace('=', '%3D')}"
    response = await client.get(f"/wecom/callback/{wecom.tenant}?{query}")
    assert response.status_code == 200, response.text
    assert response.text == "42"


async def test_url_verification_refusals(wecom: WeCom, client: httpx.AsyncClient):
    encrypted, sig = wecom.crypto.seal(b"123", "1", "2")
    good = {"msg_signature": sig, "timestamp": "1", "nonce": "2", "echostr": encrypted}
    bad_sig = await client.get(f"/wecom/callback/{wecom.tenant}", params={**good, "msg_signature": "0" * 40})
    assert bad_sig.status_code == 403
    assert bad_sig.json()["type"] == "urn:scrm:problem:wecom-signature-invalid"
    other_corp = WeComCrypto(token=wecom.crypto.token, key=wecom.crypto.key, receive_id="wwSomeOtherCorp00")
    enc2, sig2 = other_corp.seal(b"123", "1", "2")
    wrong_corp = await client.get(
        f"/wecom/callback/{wecom.tenant}", params={**good, "echostr": enc2, "msg_signature": sig2}
    )
    assert wrong_corp.status_code == 403
    assert wrong_corp.json()["type"] == "urn:scrm:problem:wecom-receive-id-mismatch"
    unknown = await client.get("/wecom/callback/nobody-here", params=good)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    missing = await client.get(f"/wecom/callback/{wecom.tenant}", params={"msg_signature": sig})
    assert missing.status_code == 422


# ---------------------------------------------------------------------------------------------
# Accepted callbacks
# ---------------------------------------------------------------------------------------------


async def test_add_external_contact_becomes_a_friend_added_event(
    wecom: WeCom, db: asyncpg.Connection, broker
):
    customer = f"wm{uuid.uuid4().hex}"
    before = await broker.end_total("friend-added")
    payload = change(
        "add_external_contact",
        wecom.corp_id,
        UserID="zhang.wei",
        ExternalUserID=customer,
        State="store-sh-012",
        WelcomeCode="WELCOMECODE-7f3a",
    )
    response = await wecom.post(payload)
    assert response.status_code == 200, response.text
    assert response.text == "success"
    assert response.headers["content-type"].startswith("text/plain")

    [record] = await new_records(broker, "friend-added", before, 1)
    assert record.key == f"{wecom.tenant}:{customer}".encode()
    envelope_json = json.loads(record.value)
    assert set(envelope_json) == {"event_id", "type", "version", "tenant_id", "occurred_at", "source", "data"}
    assert envelope_json["type"] == "friend-added" and envelope_json["version"] == 1
    assert envelope_json["tenant_id"] == wecom.tenant
    assert envelope_json["source"] == "wecom-callback"
    assert envelope_json["occurred_at"] in ("2024-05-29T02:33:20Z", "2024-05-29T02:33:20+00:00")
    event = parse_event("friend-added", record.value)
    assert event.data.external_userid == customer
    assert event.data.staff_id == "zhang.wei"
    assert event.data.state == "store-sh-012"
    assert event.data.welcome_code == "WELCOMECODE-7f3a"

    [row] = await archived(db, wecom.tenant)
    assert (row["msg_type"], row["event"], row["change_type"]) == (
        "event",
        "change_external_contact",
        "add_external_contact",
    )
    assert row["external_userid"] == customer
    assert row["payload"] == payload.decode()
    assert len(row["payload_hash"]) == 64


async def test_a_retried_callback_yields_one_event(wecom: WeCom, db: asyncpg.Connection, broker):
    customer = f"wm{uuid.uuid4().hex}"
    before = await broker.end_total("friend-added")
    payload = change("add_external_contact", wecom.corp_id, UserID="zhang.wei", ExternalUserID=customer)
    # WeCom's retry: the same decrypted payload (re-encrypted with a new nonce, or byte-identical).
    params, body = wecom.request(payload)
    for response in [
        await wecom.post_raw(params, body),
        await wecom.post_raw(params, body),
        await wecom.post(payload),
    ]:
        assert response.status_code == 200 and response.text == "success"
    # A later, different callback: once it is on the topic, any duplicate enqueued before it would
    # be there too (the relay publishes in outbox order and waits for the acks).
    sentinel = f"wm{uuid.uuid4().hex}"
    await wecom.post(
        change("add_external_contact", wecom.corp_id, UserID="zhang.wei", ExternalUserID=sentinel)
    )

    records = await new_records(broker, "friend-added", before, 2)
    assert [r.key for r in records].count(f"{wecom.tenant}:{customer}".encode()) == 1
    assert len(await archived(db, wecom.tenant)) == 2
    assert len(await outbox(db)) == 2


async def test_every_change_type_reaches_its_topic(wecom: WeCom, db: asyncpg.Connection, broker):
    cases = [
        ("add_external_contact", "friend-added", {"State": "poster-618", "WelcomeCode": "WC1"}),
        ("add_half_external_contact", "friend-added", {"State": "poster-618", "WelcomeCode": "WC2"}),
        ("del_external_contact", "friend-deleted", {"Source": "DELETE_BY_TRANSFER"}),
        ("del_follow_user", "friend-deleted", {}),
        ("edit_external_contact", "contact-updated", {}),
        ("transfer_fail", "transfer-failed", {"FailReason": "customer_refused"}),
    ]
    topics = sorted({topic for _, topic, _ in cases})
    before = {topic: await broker.end_total(topic) for topic in topics}
    customers = {}
    for change_type, _, extra in cases:
        customers[change_type] = f"wm{uuid.uuid4().hex}"
        payload = change(
            change_type, wecom.corp_id, UserID="li.na", ExternalUserID=customers[change_type], **extra
        )
        response = await wecom.post(payload)
        assert response.status_code == 200 and response.text == "success", response.text

    seen = {}
    for topic in topics:
        expected = sum(1 for _, t, _ in cases if t == topic)
        for record in await new_records(broker, topic, before[topic], expected):
            event = parse_event(topic, record.value)
            seen[event.data.external_userid] = (topic, event)

    by_type = {ct: seen[customers[ct]] for ct, _, _ in cases}
    assert {ct: topic for ct, (topic, _) in by_type.items()} == {ct: t for ct, t, _ in cases}
    assert by_type["add_half_external_contact"][1].data.welcome_code == "WC2"
    assert by_type["del_external_contact"][1].data.deleted_by == "staff"
    assert by_type["del_external_contact"][1].data.source == "DELETE_BY_TRANSFER"
    assert by_type["del_follow_user"][1].data.deleted_by == "customer"
    assert by_type["edit_external_contact"][1].data.changed == ["profile"]
    assert by_type["transfer_fail"][1].data.fail_reason == "customer_refused"
    assert {r["change_type"] for r in await archived(db, wecom.tenant)} == {ct for ct, _, _ in cases}


async def test_other_messages_are_archived_and_acknowledged_without_events(
    wecom: WeCom, db: asyncpg.Connection
):
    text_message = (
        f"<xml><ToUserName>{wecom.corp_id}</ToUserName><FromUserName>zhang.wei</FromUserName>"
        "<CreateTime>1716950000</CreateTime><MsgType>text</MsgType><Content>hello</Content>"
        "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
    ).encode()
    group_change = (
        f"<xml><ToUserName><![CDATA[{wecom.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1716950000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA]]></ChatId>"
        "<ChangeType><![CDATA[dismiss]]></ChangeType></xml>"
    ).encode()
    for payload in (text_message, group_change):
        response = await wecom.post(payload)
        assert response.status_code == 200 and response.text == "success"
    rows = await archived(db, wecom.tenant)
    assert [(r["msg_type"], r["event"]) for r in rows] == [("text", None), ("event", "change_external_chat")]
    assert await outbox(db) == []


# ---------------------------------------------------------------------------------------------
# Refusals: 4xx, nothing archived, nothing published
# ---------------------------------------------------------------------------------------------


async def assert_nothing_kept(db: asyncpg.Connection, tenant: str) -> None:
    assert await archived(db, tenant) == []
    # Events leave only through this schema's outbox: no row, nothing published.
    assert await outbox(db) == []


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"].removeprefix("urn:scrm:problem:")


def add_payload(wecom: WeCom) -> bytes:
    return change(
        "add_external_contact", wecom.corp_id, UserID="zhang.wei", ExternalUserID=f"wm{uuid.uuid4().hex}"
    )


async def test_bad_signature_is_refused(wecom: WeCom, db: asyncpg.Connection):
    params, body = wecom.request(add_payload(wecom))
    response = await wecom.post_raw({**params, "msg_signature": "f" * 40}, body)
    assert response.status_code == 403 and problem_type(response) == "wecom-signature-invalid"
    # A signature over other parameters (a replayed signature with a new timestamp) fails too.
    response = await wecom.post_raw({**params, "timestamp": "1716959999"}, body)
    assert response.status_code == 403
    await assert_nothing_kept(db, wecom.tenant)


async def test_wrong_corp_is_refused(wecom: WeCom, db: asyncpg.Connection):
    other = WeComCrypto(token=wecom.crypto.token, key=wecom.crypto.key, receive_id="wwAnotherCorp0000")
    encrypted, sig = other.seal(add_payload(wecom), "1", "2")
    response = await wecom.post_raw(
        {"msg_signature": sig, "timestamp": "1", "nonce": "2"}, envelope(encrypted, "x")
    )
    assert response.status_code == 403 and problem_type(response) == "wecom-receive-id-mismatch"
    await assert_nothing_kept(db, wecom.tenant)


async def test_undecryptable_is_refused(wecom: WeCom, db: asyncpg.Connection):
    # Right token, wrong EncodingAESKey: the signature holds, the plaintext is garbage.
    other_key = WeComCrypto.from_settings(wecom.crypto.token, random_aes_key(), wecom.corp_id)
    encrypted, sig = other_key.seal(add_payload(wecom), "1", "2")
    response = await wecom.post_raw(
        {"msg_signature": sig, "timestamp": "1", "nonce": "2"}, envelope(encrypted, "x")
    )
    assert response.status_code in (400, 403)
    assert problem_type(response) in ("wecom-decrypt-failed", "wecom-receive-id-mismatch")
    # Not base64 at all, correctly signed.
    sig = signature(wecom.crypto.token, "1", "2", "%%%not-base64%%%")
    response = await wecom.post_raw(
        {"msg_signature": sig, "timestamp": "1", "nonce": "2"}, envelope("%%%not-base64%%%", "x")
    )
    assert response.status_code == 400 and problem_type(response) == "wecom-decrypt-failed"
    await assert_nothing_kept(db, wecom.tenant)


async def test_oversized_body_is_refused(
    wecom: WeCom, db: asyncpg.Connection, contact_settings: ContactSettings
):
    limit = contact_settings.wecom_callback_max_bytes
    padding = "<Pad>" + "x" * limit + "</Pad>"
    params, body = wecom.request(add_payload(wecom))
    big = body.replace(b"</xml>", padding.encode() + b"</xml>")
    response = await wecom.post_raw(params, big)
    assert response.status_code == 413 and problem_type(response) == "wecom-callback-too-large"
    assert response.json()["max_bytes"] == limit

    async def chunked():  # no Content-Length: the limit holds while streaming
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    response = await wecom.client.post(f"/wecom/callback/{wecom.tenant}", params=params, content=chunked())
    assert response.status_code == 413
    await assert_nothing_kept(db, wecom.tenant)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<xml><Encrypt>abc",
        b"<xml><ToUserName>ww</ToUserName></xml>",
        b'{"Encrypt": "abc"}',
    ],
)
async def test_malformed_envelope_is_refused(wecom: WeCom, db: asyncpg.Connection, body: bytes):
    params, _ = wecom.request(add_payload(wecom))
    response = await wecom.post_raw(params, body)
    assert response.status_code == 400 and problem_type(response) == "wecom-callback-malformed"
    await assert_nothing_kept(db, wecom.tenant)


async def test_xxe_in_the_envelope_is_refused(wecom: WeCom, db: asyncpg.Connection):
    params, body = wecom.request(add_payload(wecom))
    xxe = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + body.replace(
        b"<ToUserName>", b"<Leak>&xxe;</Leak><ToUserName>", 1
    )
    response = await wecom.post_raw(params, xxe)
    assert response.status_code == 400 and problem_type(response) == "wecom-xml-forbidden"
    assert "root:" not in response.text
    await assert_nothing_kept(db, wecom.tenant)


async def test_xxe_inside_the_encrypted_message_is_refused(wecom: WeCom, db: asyncpg.Connection):
    # Whoever holds the tenant's token and key could encrypt a hostile document: still refused.
    inner = (
        b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<xml><MsgType>event</MsgType><Event>change_external_contact</Event>"
        b"<ChangeType>add_external_contact</ChangeType><ExternalUserID>&b;</ExternalUserID></xml>"
    )
    response = await wecom.post(inner)
    assert response.status_code == 400 and problem_type(response) == "wecom-xml-forbidden"
    malformed = await wecom.post(b"<xml><MsgType>event</MsgType")
    assert malformed.status_code == 400 and problem_type(malformed) == "wecom-callback-malformed"
    await assert_nothing_kept(db, wecom.tenant)


async def test_a_change_without_its_ids_is_refused(wecom: WeCom, db: asyncpg.Connection):
    response = await wecom.post(change("add_external_contact", wecom.corp_id, UserID="zhang.wei"))
    assert response.status_code == 400 and problem_type(response) == "wecom-callback-unmappable"
    await assert_nothing_kept(db, wecom.tenant)


async def test_unknown_or_unconfigured_tenant_is_404(
    wecom: WeCom, db: asyncpg.Connection, client: httpx.AsyncClient
):
    params, body = wecom.request(add_payload(wecom))
    for other in ("t-not-configured", "Not_A_Slug!", "x" * 80):
        response = await wecom.post_raw(params, body, tenant=other)
        assert response.status_code == 404 and problem_type(response) == "wecom-tenant-unknown"
    await assert_nothing_kept(db, wecom.tenant)
    assert await db.fetchval("SELECT count(*) FROM callback_archive") == 0


async def test_another_tenants_signature_does_not_open_this_tenants_callback(
    wecom: WeCom, db: asyncpg.Connection, client: httpx.AsyncClient, auth
):
    # Tenant B is configured with its own token and key; a callback signed for A, sent to B's URL.
    other = f"t{uuid.uuid4().hex[:10]}"
    response = await client.put(
        "/v1/wecom/config",
        json={"corp_id": "wwTenantB00000000", "token": "tokenB", "encoding_aes_key": random_aes_key()},
        headers=auth(other, "admin"),
    )
    assert response.status_code == 200
    params, body = wecom.request(add_payload(wecom))
    response = await wecom.post_raw(params, body, tenant=other)
    assert response.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM callback_archive") == 0
    assert await outbox(db) == []


async def test_the_event_is_committed_before_success_and_relayed_after(wecom: WeCom, db: asyncpg.Connection):
    """No remote call in the request: archive + outbox row in one transaction, then ``success``."""
    payload = add_payload(wecom)
    response = await wecom.post(payload)
    assert response.status_code == 200
    # The relay publishes after the response; the outbox row is there at once.
    [row] = await outbox(db)
    assert row["topic"] == "friend-added"

    async def relayed() -> bool:
        return await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == 1

    await wait_for(relayed)
