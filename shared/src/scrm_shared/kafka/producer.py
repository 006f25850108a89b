"""Kafka producer factory: durable and fast by default."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer


def create_producer(bootstrap: str, *, client_id: str = "scrm", linger_ms: int = 5) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) with compression and a small linger for batching.

    The caller starts and stops it (``await producer.start()`` / ``stop()``), normally in the
    service lifespan.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )
