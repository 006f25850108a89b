"""``scrm-demo``: realistic traffic for the local platform (``make run DEMO=1``).

A few brands (tenants), each with stores and shopping guides. Customers are added as WeCom
friends through channel QR codes (``state``), receive messages (welcome, private, broadcast) and
place orders at the POS, in the mall or the mini-program with Chinese retail SKUs; a few delete
the guide or get a refund. Events follow the platform contract and are keyed
``<tenant_id>:<subject>`` like any real producer's.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import typer

from scrm_shared.events import (
    FriendAddedEvent,
    FriendDeletedEvent,
    MessageSentEvent,
    OrderPlacedEvent,
    OrderRefundedEvent,
    new_event,
)
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.infra import port_open

CATALOGUE: dict[str, list[tuple[str, str, Decimal]]] = {
    "护肤": [
        ("SK-FTE-230", "神仙水 230ml", Decimal("1540.00")),
        ("LAN-ANR-50", "小棕瓶精华 50ml", Decimal("760.00")),
        ("WIN-SRC-50", "舒敏保湿特护霜 50g", Decimal("268.00")),
    ],
    "彩妆": [
        ("MAC-RB-CHL", "子弹头口红 Chili", Decimal("190.00")),
        ("PF-CUSH-02", "气垫粉底 02", Decimal("299.00")),
    ],
    "母婴": [
        ("FEI-A2-900", "A2 婴儿奶粉 3段 900g", Decimal("328.00")),
        ("PAM-NB-84", "一级帮纸尿裤 NB 84片", Decimal("139.90")),
    ],
    "茶饮": [
        ("LJ-MQ-250", "明前龙井 250g", Decimal("588.00")),
        ("PE-7542-357", "普洱生茶饼 357g", Decimal("238.00")),
    ],
    "零食": [
        ("SQS-NUT-750", "每日坚果 750g", Decimal("89.90")),
        ("BL-MOON-6", "流心奶黄月饼 6粒", Decimal("158.00")),
    ],
}


@dataclass
class Brand:
    tenant_id: str
    stores: list[str]
    guides: dict[str, str]  # staff_id -> store_id
    states: list[str]
    categories: list[str]
    customers: list[tuple[str, str]] = field(default_factory=list)  # (external_userid, staff_id)
    orders: list[tuple[str, Decimal]] = field(default_factory=list)


def brands() -> list[Brand]:
    return [
        Brand(
            "demo",
            ["sh-012", "bj-003", "hz-007"],
            {"zhang.wei": "sh-012", "li.na": "sh-012", "wang.fang": "bj-003", "chen.jie": "hz-007"},
            ["store-sh-012-poster", "store-bj-003-counter", "live-1111", "mini-program-coupon", ""],
            ["护肤", "彩妆"],
        ),
        Brand(
            "lotus-baby",
            ["gz-021", "sz-008"],
            {"liu.yang": "gz-021", "huang.min": "sz-008"},
            ["store-gz-021-poster", "community-group", "mall-checkout"],
            ["母婴", "零食"],
        ),
        Brand(
            "west-lake-tea",
            ["hz-001"],
            {"zhou.jing": "hz-001", "wu.lei": "hz-001"},
            ["store-hz-001-poster", "tea-ceremony-event"],
            ["茶饮", "零食"],
        ),
    ]


def _external_userid(rng: random.Random) -> str:
    # WeCom external_userids look like "wmXXXX..." (32 chars).
    return "wm" + "".join(rng.choices(string.ascii_letters + string.digits, k=30))


def _phone_hash(rng: random.Random) -> str:
    phone = "+86138" + "".join(rng.choices(string.digits, k=8))
    return hashlib.sha256(phone.encode()).hexdigest()


class DemoTraffic:
    """Generates the next event of a random brand, weighted like a real private domain."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - demo data, not security
        self.brands = brands()

    def next_event(self) -> tuple[str, Any]:
        brand = self.rng.choice(self.brands)
        roll = self.rng.random()
        if not brand.customers or roll < 0.25:
            return "friend-added", self._friend_added(brand)
        if roll < 0.55:
            return "message-sent", self._message_sent(brand)
        if roll < 0.9:
            return "order-placed", self._order_placed(brand)
        if roll < 0.95 and brand.orders:
            return "order-refunded", self._order_refunded(brand)
        return "friend-deleted", self._friend_deleted(brand)

    def _friend_added(self, brand: Brand) -> Any:
        staff_id = self.rng.choice(list(brand.guides))
        external_userid = _external_userid(self.rng)
        brand.customers.append((external_userid, staff_id))
        now = datetime.now(UTC)
        return new_event(
            FriendAddedEvent,
            tenant_id=brand.tenant_id,
            source="wecom-callback",
            data={
                "external_userid": external_userid,
                "staff_id": staff_id,
                "state": self.rng.choice(brand.states),
                "welcome_code": uuid.uuid4().hex,
                "gender": self.rng.choice([0, 1, 2, 2]),
                "store_id": brand.guides[staff_id],
                "added_at": now,
            },
        )

    def _message_sent(self, brand: Brand) -> Any:
        external_userid, staff_id = self.rng.choice(brand.customers)
        kind = self.rng.choice(["private", "broadcast", "broadcast", "welcome"])
        return new_event(
            MessageSentEvent,
            tenant_id=brand.tenant_id,
            source="campaign-svc",
            data={
                "message_id": uuid.uuid4().hex,
                "external_userid": external_userid,
                "staff_id": staff_id,
                "campaign_id": f"cmp-{self.rng.randint(1, 5)}" if kind == "broadcast" else None,
                "kind": kind,
                "content_ref": f"tpl-{self.rng.randint(100, 120)}",
                "sent_at": datetime.now(UTC),
            },
        )

    def _order_placed(self, brand: Brand) -> Any:
        external_userid, staff_id = self.rng.choice(brand.customers)
        lines = []
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            category = self.rng.choice(brand.categories)
            sku, name, price = self.rng.choice(CATALOGUE[category])
            lines.append(
                {
                    "sku": sku,
                    "name": name,
                    "category": category,
                    "quantity": self.rng.choice([1, 1, 2]),
                    "unit_price": price,
                }
            )
        total = sum((Decimal(line["quantity"]) * line["unit_price"] for line in lines), Decimal("0"))
        channel = self.rng.choice(["pos", "pos", "mall", "mini-program"])
        customer: dict[str, str] = {"external_userid": external_userid}
        if channel == "pos" and self.rng.random() < 0.3:
            customer = {"phone_hash": _phone_hash(self.rng)}  # a walk-in member not yet linked
        order_id = f"{brand.tenant_id[:3].upper()}{datetime.now(UTC):%Y%m%d}{self.rng.randint(0, 10**8):08d}"
        brand.orders.append((order_id, total))
        return new_event(
            OrderPlacedEvent,
            tenant_id=brand.tenant_id,
            source=f"{channel}-{brand.guides[staff_id]}",
            data={
                "order_id": order_id,
                "channel": channel,
                "store_id": brand.guides[staff_id] if channel == "pos" else None,
                "staff_id": staff_id,
                "customer": customer,
                "items": lines,
                "total_amount": total,
                "currency": "CNY",
                "placed_at": datetime.now(UTC),
            },
        )

    def _order_refunded(self, brand: Brand) -> Any:
        order_id, total = self.rng.choice(brand.orders)
        return new_event(
            OrderRefundedEvent,
            tenant_id=brand.tenant_id,
            source="mall-aftersales",
            data={
                "refund_id": uuid.uuid4().hex,
                "order_id": order_id,
                "amount": total,
                "currency": "CNY",
                "reason": self.rng.choice(["七天无理由", "商品破损", "尺码不合适"]),
                "refunded_at": datetime.now(UTC),
            },
        )

    def _friend_deleted(self, brand: Brand) -> Any:
        external_userid, staff_id = brand.customers.pop(self.rng.randrange(len(brand.customers)))
        return new_event(
            FriendDeletedEvent,
            tenant_id=brand.tenant_id,
            source="wecom-callback",
            data={
                "external_userid": external_userid,
                "staff_id": staff_id,
                "deleted_by": self.rng.choice(["customer", "staff"]),
                "deleted_at": datetime.now(UTC),
            },
        )


async def produce(bootstrap: str, rate: float, limit: int | None, seed: int | None) -> int:
    traffic = DemoTraffic(seed)
    producer = create_producer(bootstrap, client_id="scrm-demo")
    await producer.start()
    sent = 0
    tick = 0.1
    per_tick = max(rate * tick, 0.0)
    carry = 0.0
    try:
        while limit is None or sent < limit:
            carry += per_tick
            burst = int(carry)
            carry -= burst
            for _ in range(burst):
                topic, event = traffic.next_event()
                await producer.send(topic, value=event.to_bytes(), key=event.key())
                sent += 1
                if limit is not None and sent >= limit:
                    break
            await asyncio.sleep(tick)  # pacing the demo rate, not synchronisation
        await producer.flush()
    finally:
        await producer.stop()
    return sent


app = typer.Typer(add_completion=False)


@app.command()
def run(
    bootstrap: Annotated[str, typer.Option(envvar="SCRM_KAFKA_BOOTSTRAP")] = "127.0.0.1:9092",
    rate: Annotated[float, typer.Option(help="events per second")] = 20.0,
    limit: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed for repeatable traffic")] = None,
    wait_ready: Annotated[bool, typer.Option(help="wait for the broker port first")] = False,
) -> None:
    """Produce demo traffic until Ctrl-C (or --limit)."""
    if wait_ready:
        host, port = bootstrap.rsplit(":", 1)
        for _ in range(600):
            if port_open(host, int(port)):
                break
            time.sleep(0.2)
    typer.echo(f"producing demo traffic to {bootstrap} at {rate}/s")
    sent = asyncio.run(produce(bootstrap, rate, limit, seed))
    typer.echo(f"sent {sent} events")


def main() -> None:
    app()
