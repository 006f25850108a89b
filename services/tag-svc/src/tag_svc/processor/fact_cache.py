"""Contacts' facts kept in memory between batches, so the processor does not read back from
PostgreSQL the history it wrote itself.

A contact's facts change only through the processor (new facts) and erasure. Every batch that
records facts for a contact adds one to its ``profiles.facts_seq`` (in the same transaction), and
the locking read of the profile rows returns the sequence: a cached entry holds the facts as of
one sequence and is used only when the row still has it. So an entry can never be stale, even
with several processor instances writing one contact (orders are keyed by order id and land on
any partition): another writer's batch moves the sequence on, and the entry no longer matches.

Per batch, :class:`BatchFacts` answers the evaluator's fact reads (from the entry plus the
batch's own facts, else from the database) and stages the contacts' new entries; they enter the
cache only once the transaction has committed (:meth:`BatchFacts.commit`), so a rolled-back batch
leaves nothing behind. The cache is bounded by the facts it holds (least recently used
contacts go first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from tag_svc.processor.store import Conn
from tag_svc.processor.store import profiles as profile_store
from tag_svc.segments import Fact

__all__ = ["BatchFacts", "FactCache"]

FACT_READS = Counter(
    "scrm_segment_fact_reads",
    "Contacts whose facts the segment processor needed, by where they came from.",
    ["source"],
)

CACHED_FACTS = Gauge("scrm_segment_fact_cache_facts", "Facts the segment processor holds in memory.")

_Key = tuple[str, str]
_FactId = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    types: frozenset[str]
    lines: bool
    facts: Mapping[_FactId, Fact]
    """Every fact of ``types`` (with item lines when ``lines``), by (event_type, key)."""

    def covers(self, types: Collection[str], lines: bool) -> bool:
        return (self.lines or not lines) and self.types.issuperset(types)


class FactCache:
    """Facts of recently seen contacts, up to ``capacity`` facts in all (a contact's history is
    as long as its orders and messages: bounding contacts alone would not bound memory); each
    entry valid for one ``profiles.facts_seq``."""

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self.size = 0
        """Facts held now."""
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _Key, seq: int) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.seq != seq:
            self._drop(key)  # someone else wrote this contact's facts since
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: _Key, entry: _Entry) -> None:
        known = self._entries.get(key)
        if known is not None and known.seq > entry.seq:
            return  # a later batch of this contact committed first
        if len(entry.facts) > self.capacity:
            self._drop(key)
            return
        if known is not None:
            self.size -= len(known.facts)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self.size += len(entry.facts)
        while self.size > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.facts)

    def forget(self, keys: Iterable[_Key]) -> None:
        for key in keys:
            self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.facts)


class BatchFacts:
    """One tenant's fact reads within one batch's transaction.

    ``seqs``: each locked contact's ``facts_seq`` as the lock read it (before this batch);
    ``created``: contacts whose profile row this batch created (no facts stored yet);
    ``recorded``: the facts this batch records per contact (its sequence moves on by one);
    ``types`` / ``lines``: what the tenant's live segments read, loaded whole on a miss so the
    entry serves every later batch.
    """

    def __init__(
        self,
        cache: FactCache,
        tenant_id: str,
        *,
        seqs: Mapping[str, int],
        created: Collection[str],
        recorded: Mapping[str, Iterable[Fact]],
        types: Collection[str],
        lines: bool,
    ) -> None:
        self.cache = cache
        self.tenant_id = tenant_id
        self.seqs = seqs
        self.created = created
        self.recorded = {euid: list(facts) for euid, facts in recorded.items() if facts}
        self.types = frozenset(types)
        self.lines = lines
        self._staged: dict[str, _Entry] = {}

    def seq_after(self, euid: str) -> int:
        return self.seqs[euid] + (1 if euid in self.recorded else 0)

    async def load(
        self, conn: Conn, euids: Collection[str], types: Collection[str], *, lines: bool
    ) -> dict[str, list[Fact]]:
        """The facts of ``types`` of each contact in ``euids``, as stored after this batch's
        inserts (the same answer as :func:`profile_store.load_facts`)."""
        out: dict[str, list[Fact]] = {}
        missing: list[str] = []
        for euid in euids:
            entry = self._before(euid)
            if entry is None or not entry.covers(types, lines):
                missing.append(euid)
                continue
            FACT_READS.labels("new" if euid in self.created else "cache").inc()
            facts = dict(entry.facts)
            for fact in self.recorded.get(euid, ()):
                if fact.event_type in entry.types:
                    facts.setdefault((fact.event_type, fact.key), fact)  # stored first wins
            self._staged[euid] = _Entry(self.seq_after(euid), entry.types, entry.lines, facts)
            out[euid] = [f for f in facts.values() if f.event_type in types]
        if missing:
            FACT_READS.labels("database").inc(len(missing))
            load_types = self.types | frozenset(types)
            load_lines = self.lines or lines
            loaded = await profile_store.load_facts(
                conn, self.tenant_id, missing, load_types, lines=load_lines
            )
            for euid in missing:
                facts = {(f.event_type, f.key): f for f in loaded.get(euid, ())}
                self._staged[euid] = _Entry(self.seq_after(euid), load_types, load_lines, facts)
                out[euid] = [f for f in facts.values() if f.event_type in types]
        return out

    def commit(self) -> None:
        """The transaction committed: the staged entries are what the database now holds."""
        for euid, entry in self._staged.items():
            self.cache.put((self.tenant_id, euid), entry)
        self._staged.clear()
        CACHED_FACTS.set(self.cache.size)

    def _before(self, euid: str) -> _Entry | None:
        """What this contact's facts were before the batch, when known without a read."""
        seq = self.seqs.get(euid)
        if seq is None:
            return None
        if euid in self.created:
            return _Entry(seq, self.types, self.lines, {})
        return self.cache.get((self.tenant_id, euid), seq)
