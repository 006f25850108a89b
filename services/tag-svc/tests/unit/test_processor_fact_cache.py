"""The processor's fact cache: an entry serves only the sequence it was read at, stays bounded,
and enters the cache only when its batch commits; batches split into lanes by contact."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from scrm_shared.events import OrderPlacedEvent, new_event
from scrm_shared.kafka.consumer import Consumed
from tag_svc.processor.fact_cache import BatchFacts, FactCache, _Entry
from tag_svc.processor.handler import split_lanes
from tag_svc.segments import Fact

ORDER = "order-placed"


def fact(key: str, day: int = 1) -> Fact:
    return Fact(ORDER, key, date(2024, 5, day), amount=Decimal("10.00"))


def entry(seq: int, *facts: Fact) -> _Entry:
    return _Entry(seq, frozenset({ORDER}), False, {(f.event_type, f.key): f for f in facts})


def test_an_entry_serves_only_its_sequence():
    cache = FactCache(10)
    cache.put(("t", "wm1"), entry(3, fact("o1")))
    assert cache.get(("t", "wm1"), 4) is None  # someone wrote wm1 since
    assert cache.get(("t", "wm1"), 3) is None  # and the stale entry is gone
    cache.put(("t", "wm1"), entry(4, fact("o1")))
    assert cache.get(("t", "wm1"), 4) is not None


def test_the_cache_holds_at_most_its_capacity_in_facts_most_recently_used_first():
    cache = FactCache(4)
    for n in range(3):
        cache.put(("t", f"wm{n}"), entry(0, fact(f"o{n}a"), fact(f"o{n}b")))
    assert (len(cache), cache.size) == (2, 4)
    assert cache.get(("t", "wm0"), 0) is None
    assert cache.get(("t", "wm1"), 0) is not None  # used: wm2 is now the oldest
    cache.put(("t", "wm3"), entry(0, fact("o3")))
    assert cache.get(("t", "wm2"), 0) is None and cache.size == 3
    cache.put(("t", "wm4"), entry(0, *(fact(f"o4{n}") for n in range(5))))  # more than it holds
    assert cache.get(("t", "wm4"), 0) is None and cache.size == 3


def test_an_older_entry_never_replaces_a_newer_one():
    cache = FactCache(10)
    cache.put(("t", "wm1"), entry(5, fact("o1"), fact("o2")))
    cache.put(("t", "wm1"), entry(4, fact("o1")))
    got = cache.get(("t", "wm1"), 5)
    assert got is not None and len(got.facts) == 2


async def test_a_batch_reads_the_cached_history_plus_its_own_facts_and_commits_the_sum():
    cache = FactCache(10)
    cache.put(("t", "wm1"), entry(1, fact("o1")))
    read = BatchFacts(
        cache,
        "t",
        seqs={"wm1": 1, "wm2": 0},
        created={"wm2"},
        recorded={"wm1": [fact("o2", 2)], "wm2": [fact("o3", 3)]},
        types={ORDER},
        lines=False,
    )
    got = await read.load(None, ["wm1", "wm2"], {ORDER}, lines=False)  # type: ignore[arg-type]
    assert sorted(f.key for f in got["wm1"]) == ["o1", "o2"]
    assert [f.key for f in got["wm2"]] == ["o3"]
    assert cache.get(("t", "wm2"), 1) is None  # staged, not committed yet
    read.commit()
    after = cache.get(("t", "wm1"), 2)
    assert after is not None and sorted(k for _, k in after.facts) == ["o1", "o2"]
    assert cache.get(("t", "wm2"), 1) is not None


def order(euid: str, n: int) -> Consumed:
    event = new_event(
        OrderPlacedEvent,
        tenant_id="acme",
        source="pos",
        data={
            "order_id": f"o{n}",
            "channel": "pos",
            "customer": {"external_userid": euid},
            "items": [{"sku": "S", "category": "C", "quantity": 1, "unit_price": "10.00"}],
            "total_amount": "10.00",
            "placed_at": datetime(2024, 5, 1, tzinfo=UTC),
        },
    )
    return Consumed(event, "order-placed", n % 6, n, event.key(), ())


def test_lanes_split_by_contact_whatever_the_partition_and_keep_the_order():
    batch = [order(f"wm{n % 7}", n) for n in range(60)]
    parts = split_lanes(batch, 2)
    assert len(parts) == 2 and sum(map(len, parts)) == 60
    owners = [{c.event.data.customer.external_userid for c in part} for part in parts]
    assert not owners[0] & owners[1]
    for part in parts:
        assert [c.offset for c in part] == sorted(c.offset for c in part)
    assert split_lanes(batch, 1) == [batch]
