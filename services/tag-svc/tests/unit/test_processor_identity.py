"""Which contact an order belongs to: external_userid as it is, else the most trusted link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scrm_shared.events import ContactIdentifiedEvent, new_event
from scrm_shared.events.orders import Customer
from tag_svc.processor.identity import identities, latest_links, resolve

PHONE = "a" * 64
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def test_external_userid_resolves_directly_whatever_the_links_say():
    links = {("member_id", "M1"): "wm-other"}
    assert resolve(Customer(external_userid="wm1", member_id="M1"), links) == "wm1"


def test_the_most_trusted_linked_identity_wins():
    customer = Customer(unionid="U1", member_id="M1", phone_hash=PHONE)
    assert identities(customer) == [("unionid", "U1"), ("member_id", "M1"), ("phone_hash", PHONE)]
    assert resolve(customer, {("phone_hash", PHONE): "wm3", ("member_id", "M1"): "wm2"}) == "wm2"
    assert resolve(customer, {("phone_hash", PHONE): "wm3"}) == "wm3"
    assert resolve(customer, {}) is None


def test_a_batch_teaches_the_latest_link_of_each_identity():
    def identified(euid: str, at: datetime, **ids: str) -> ContactIdentifiedEvent:
        return new_event(
            ContactIdentifiedEvent,
            tenant_id="acme",
            source="contact-svc",
            data={"external_userid": euid, "source": "api", "identified_at": at, **ids},
        )

    links = latest_links(
        [
            identified("wm2", T0 + timedelta(days=1), phone_hash=PHONE),
            identified("wm1", T0, phone_hash=PHONE, member_id="M1"),
        ]
    )
    assert {(x.kind, x.value): x.external_userid for x in links} == {
        ("phone_hash", PHONE): "wm2",
        ("member_id", "M1"): "wm1",
    }
