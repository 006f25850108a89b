"""The producer's partitioner: aiokafka's default placement, with the keys' hashes cached."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from scrm_shared.kafka.producer import create_producer, keyed_partition


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_a_keyed_record_goes_where_the_default_partitioner_puts_it(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key, all_partitions, all_partitions)
    assert keyed_partition(key, all_partitions, all_partitions) == expected
    # Asked again (a cached hash), with another partition count: still the default's answer.
    assert keyed_partition(key, all_partitions[:1], []) == 0
    assert keyed_partition(key, all_partitions, []) == expected


# Murmur2 of these keys as Kafka's Java client computes it (org.apache.kafka.common.utils.Utils,
# its own unit test's vectors): the partition is (hash & 0x7fffffff) % partitions.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_placements_agree_with_the_java_client() -> None:
    for partitions in (1, 6, 12, 64):
        all_partitions = list(range(partitions))
        for key, java_hash in JAVA_MURMUR2.items():
            assert (
                keyed_partition(key, all_partitions, all_partitions) == (java_hash & 0x7FFFFFFF) % partitions
            )


def test_unkeyed_records_spread_over_the_available_partitions() -> None:
    seen = {keyed_partition(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert seen == {1, 3}
    assert {keyed_partition(None, [0, 1], []) for _ in range(200)} == {0, 1}


async def test_the_factory_installs_it() -> None:
    producer = create_producer("127.0.0.1:1")
    try:
        assert producer._partitioner is keyed_partition  # what send() calls
    finally:
        await producer.stop()  # never started: only releases it
