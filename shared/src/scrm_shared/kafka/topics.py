"""Idempotent topic creation at start-up (auto-created topics get the broker's defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

# Core and auxiliary topics of the platform (names fixed by DESIGN.md).
CORE_TOPICS = (
    "friend-added",
    "friend-deleted",
    "contact-updated",
    "transfer-failed",
    "contact-identified",
    "contacts-transferred",
    "contact-erased",
    "contact-tagged",
    "segment-changed",
    "segment-deleted",
    "message-sent",
    "order-placed",
    "order-refunded",
    "dead-letter",
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


def platform_topics(partitions: int, retention_ms: int | None = None) -> list[TopicSpec]:
    config = {"retention.ms": str(retention_ms)} if retention_ms else {}
    return [TopicSpec(name, partitions=partitions, config=dict(config)) for name in CORE_TOPICS]


async def ensure_topics(bootstrap: str, specs: list[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=s.replication_factor,
                        topic_configs=s.config,
                    )
                    for s in missing
                ]
            )
        except TopicAlreadyExistsError:
            pass  # a concurrent start created it first: that is the idempotent outcome
        return [s.name for s in missing]
    finally:
        await admin.close()
