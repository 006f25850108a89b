"""Which contact an order (or a refund) belongs to.

An order's customer carries ``external_userid`` (the WeCom contact itself: used as it is) or only
identities the POS or mall knows: ``unionid``, ``member_id``, ``phone_hash``. contact-svc
publishes ``contact-identified`` when it learns that such an identity belongs to a contact; we
keep those links and resolve through them, in that order of trust (a unionid is WeChat's own, a
member id the brand's, a phone number can change hands).

An order whose identities link to no contact yet is *kept* (``pending_orders``) and applied when a
link arrives: on its own day, so windows and counts come out exactly as if the link had been
known all along. A refund needs its order's fact (it is dated on the order's day), so a refund of
an order that has none yet waits too (``pending_refunds``) and is applied with its order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID
from zoneinfo import ZoneInfo

from scrm_shared.events import (
    ContactIdentified,
    ContactIdentifiedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
)
from scrm_shared.events.orders import Customer
from tag_svc.processor.model import Cause, ContactFact
from tag_svc.processor.store import Conn
from tag_svc.processor.store import identity as store
from tag_svc.segments import Fact, order_placed_fact, order_refunded_fact

__all__ = [
    "IDENTITY_KINDS",
    "ContactFact",
    "event_cause",
    "identities",
    "latest_links",
    "resolve",
    "resolve_orders",
    "resolve_refunds",
]

IDENTITY_KINDS = ("unionid", "member_id", "phone_hash")
"""Identity kinds in order of trust: the first that links to a contact decides."""


def event_cause(event: ContactIdentifiedEvent | OrderPlacedEvent | OrderRefundedEvent) -> Cause:
    return Cause("event", event.occurred_at, str(event.event_id))


def identities(who: Customer | ContactIdentified) -> list[tuple[str, str]]:
    """The (kind, value) identities of a customer (or of a link event), most trusted first,
    external_userid aside."""
    return [(kind, value) for kind in IDENTITY_KINDS if (value := getattr(who, kind)) is not None]


def resolve(customer: Customer, links: Mapping[tuple[str, str], str]) -> str | None:
    """The contact of ``customer``: its external_userid, else its most trusted linked identity."""
    if customer.external_userid is not None:
        return customer.external_userid
    for key in identities(customer):
        if key in links:
            return links[key]
    return None


def latest_links(events: Sequence[ContactIdentifiedEvent]) -> list[store.Link]:
    """The links a batch teaches, one per identity (the latest ``identified_at`` wins)."""
    latest: dict[tuple[str, str], store.Link] = {}
    for e in events:
        d = e.data
        for kind, value in identities(d):
            link = store.Link(kind, value, d.external_userid, d.identified_at)
            known = latest.get((kind, value))
            if known is None or known.linked_at <= link.linked_at:
                latest[(kind, value)] = link
    return list(latest.values())


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An order or refund to place: from this batch (with its cause) or from the pending queue."""

    payload: OrderPlaced | OrderRefunded
    event_id: UUID
    cause: Cause | None


async def resolve_orders(
    conn: Conn,
    tenant_id: str,
    tz: ZoneInfo,
    orders: Sequence[OrderPlacedEvent],
    identified: Sequence[ContactIdentifiedEvent],
) -> list[ContactFact]:
    """Record the batch's links, and map its orders (and the pending orders the new links
    resolve) to contacts; orders that still resolve to nobody are kept pending."""
    await store.upsert_links(conn, tenant_id, latest_links(identified))
    # A pending order applied now counts from the link's event (its day is still its own).
    link_cause: dict[tuple[str, str], Cause] = {}
    for e in identified:
        for key in identities(e.data):
            link_cause[key] = event_cause(e)
    taken = await store.take_pending_orders(
        conn, tenant_id, {kind: sorted({v for k, v in link_cause if k == kind}) for kind in IDENTITY_KINDS}
    )
    candidates = [_Candidate(e.data, e.event_id, event_cause(e)) for e in orders]
    candidates += [
        _Candidate(OrderPlaced.model_validate(data), event_id, None) for _, event_id, data in taken
    ]
    wanted = {
        key
        for c in candidates
        if c.payload.customer.external_userid is None  # type: ignore[union-attr]
        for key in identities(c.payload.customer)  # type: ignore[union-attr]
    }
    known = await store.links_for(conn, tenant_id, wanted)
    out: list[ContactFact] = []
    pending: list[store.PendingOrder] = []
    for c in candidates:
        order = c.payload
        assert isinstance(order, OrderPlaced)
        euid = resolve(order.customer, known)
        if euid is None:
            who = order.customer
            pending.append(
                store.PendingOrder(
                    order.order_id,
                    who.unionid,
                    who.member_id,
                    who.phone_hash,
                    c.event_id,
                    order.model_dump(mode="json"),
                )
            )
            continue
        # A pending order is applied because of the link that resolved it.
        cause = c.cause or next(link_cause[k] for k in identities(order.customer) if k in link_cause)
        out.append(ContactFact(euid, order_placed_fact(order, tz), cause))
    await store.insert_pending_orders(conn, tenant_id, pending)
    return out


async def resolve_refunds(
    conn: Conn, tenant_id: str, refunds: Sequence[OrderRefundedEvent], orders: Sequence[ContactFact]
) -> list[ContactFact]:
    """Map refunds to their orders' contacts: the batch's own refunds, and those that waited for
    an order of this batch. A refund whose order has no fact yet is kept pending."""
    in_batch = {o.fact.key: o for o in orders}
    waiting = await store.take_pending_refunds(conn, tenant_id, in_batch)
    candidates = [_Candidate(e.data, e.event_id, event_cause(e)) for e in refunds]
    candidates += [_Candidate(OrderRefunded.model_validate(w.refund_data), w.event_id, None) for w in waiting]
    stored = await store.order_facts(
        conn,
        tenant_id,
        {c.payload.order_id for c in candidates if c.payload.order_id not in in_batch},
    )
    out: list[ContactFact] = []
    pending: list[store.PendingRefund] = []
    for c in candidates:
        refund = c.payload
        assert isinstance(refund, OrderRefunded)
        if refund.order_id in in_batch:
            order = in_batch[refund.order_id]
            euid, order_fact, cause = order.external_userid, order.fact, c.cause or order.cause
        elif refund.order_id in stored and c.cause is not None:
            row = stored[refund.order_id]
            euid, cause = row["external_userid"], c.cause
            order_fact = Fact(
                "order-placed", refund.order_id, row["day"], channel=row["channel"], store_id=row["store_id"]
            )
        else:
            pending.append(
                store.PendingRefund(
                    refund.refund_id, refund.order_id, c.event_id, refund.model_dump(mode="json")
                )
            )
            continue
        out.append(ContactFact(euid, order_refunded_fact(refund, order_fact), cause))
    await store.insert_pending_refunds(conn, tenant_id, pending)
    return out
