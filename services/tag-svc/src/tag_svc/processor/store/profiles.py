"""SQL of the behaviour profiles (migration 0002) as the processor writes and reads them, the
follow and tag rows their attributes come from, and erasure.

Every writer of a contact's memberships first locks the contact's ``profiles`` row (the
processor, the schedule, the backfill), in ``external_userid`` order: so two of them never
evaluate one contact from different states, and never deadlock on each other.
"""

# Statements share fixed column lists (module constants) through f-strings; no value is ever
# formatted into SQL, values are $n arguments: which is what S608 guards against.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from tag_svc.processor.model import ContactTagChange, FollowChange
from tag_svc.processor.store import Conn
from tag_svc.segments import Fact, FactLine, Profile
from tag_svc.segments.sql import UPSERT_PROFILE, fact_columns, profile_args

__all__ = [
    "bump_facts_seq",
    "ensure_and_lock",
    "erase",
    "followers",
    "insert_facts",
    "load_facts",
    "lock_chunk",
    "lock_skip_locked",
    "profile_of",
    "tag_names",
    "upsert_contact_tags",
    "upsert_follows",
    "write_profiles",
]

_COLUMNS = (
    "external_userid, state, store_id, staff_ids, gender, status, first_added_at, first_added_day, tags,"
    " facts_seq"
)

# New contacts get a row first, in key order, so that the locking read below finds every one.
ENSURE_PROFILES = """
INSERT INTO profiles (tenant_id, external_userid)
SELECT $1, u FROM unnest($2::text[]) AS u ORDER BY u
ON CONFLICT (tenant_id, external_userid) DO NOTHING
RETURNING external_userid
"""

LOCK_PROFILES = f"""
SELECT {_COLUMNS} FROM profiles
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
ORDER BY external_userid
FOR UPDATE
"""

# The schedule leaves contacts that someone is evaluating now to them (they reschedule).
LOCK_PROFILES_SKIP_LOCKED = f"""
SELECT {_COLUMNS} FROM profiles
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
ORDER BY external_userid
FOR UPDATE SKIP LOCKED
"""

# The backfill walks a tenant's profiles in key order from its cursor.
LOCK_CHUNK = f"""
SELECT {_COLUMNS} FROM profiles
WHERE tenant_id = $1 AND external_userid > $2
ORDER BY external_userid
LIMIT $3
FOR UPDATE
"""

BUMP_FACTS_SEQ = """
UPDATE profiles SET facts_seq = facts_seq + 1
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
"""

SELECT_FACTS = """
SELECT external_userid, event_type, event_key, day, channel, store_id, state, kind, campaign_id, amount
FROM profile_facts
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND event_type = ANY($3::text[])
"""

# The same facts with their item lines as parallel arrays (one row per fact, no second query).
# Lines come inline (migration 0012); only facts written before it look them up, one by one: the
# condition on f.lines is a one-time filter, so for the others the lookup never runs.
SELECT_FACTS_WITH_LINES = """
SELECT f.external_userid, f.event_type, f.event_key, f.day, f.channel, f.store_id, f.state, f.kind,
       f.campaign_id, f.amount, l.categories, l.skus, l.amounts, f.lines::text
FROM profile_facts f
LEFT JOIN LATERAL (
    SELECT array_agg(category ORDER BY line_no) AS categories, array_agg(sku ORDER BY line_no) AS skus,
           array_agg(amount ORDER BY line_no) AS amounts
    FROM profile_fact_lines
    WHERE f.lines IS NULL
      AND tenant_id = f.tenant_id AND event_type = f.event_type AND event_key = f.event_key
) l ON true
WHERE f.tenant_id = $1 AND f.external_userid = ANY($2::text[]) AND f.event_type = ANY($3::text[])
"""

# The same rows as tag_svc.segments.sql.INSERT_FACT, a batch per statement. RETURNING names the
# facts that are new: a re-sent order (another event_id, same order_id) adds nothing.
INSERT_FACTS = """
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, channel, store_id,
                           state, kind, campaign_id, amount, lines)
SELECT $1, x.t, x.k, x.e, x.d, x.c, x.s, x.st, x.kd, x.cp, x.a, x.l::jsonb
FROM unnest($2::text[], $3::text[], $4::text[], $5::date[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::numeric[], $12::text[]) AS x(t, k, e, d, c, s, st, kd, cp, a, l)
ON CONFLICT (tenant_id, event_type, event_key) DO NOTHING
RETURNING event_type, event_key
"""

# A line carries its fact's contact and day (migration 0007: previews filter lines by them).
# Only the lines of facts INSERT_FACTS has just inserted, in the same transaction, are written,
# so none can exist yet: no ON CONFLICT clause (its speculative insertion was 10-20 % of the
# statement's time).
INSERT_FACT_LINES = """
INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, external_userid, day, category,
                                sku, amount)
SELECT $1, x.* FROM unnest($2::text[], $3::text[], $4::integer[], $5::text[], $6::date[], $7::text[],
                           $8::text[], $9::numeric[]) AS x
"""

# Out-of-order friend-added / friend-deleted settle the same: the latest add and the latest
# deletion win, and a follow is active when its add is the later.
UPSERT_FOLLOWS = """
INSERT INTO segment_follows AS f (tenant_id, external_userid, staff_id, added_at, deleted_at)
SELECT $1, x.e, x.s, x.a, x.d
FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS x(e, s, a, d)
ORDER BY x.e, x.s
ON CONFLICT (tenant_id, external_userid, staff_id) DO UPDATE SET
    added_at = GREATEST(f.added_at, EXCLUDED.added_at),
    deleted_at = GREATEST(f.deleted_at, EXCLUDED.deleted_at)
"""

SELECT_FOLLOWERS = """
SELECT external_userid, array_agg(staff_id ORDER BY staff_id) AS staff_ids
FROM segment_follows
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
  AND added_at IS NOT NULL AND (deleted_at IS NULL OR deleted_at < added_at)
GROUP BY external_userid
"""

# The latest change of a (contact, tag) wins, whatever order contact-tagged arrives in.
UPSERT_CONTACT_TAGS = """
INSERT INTO segment_contact_tags AS t (tenant_id, external_userid, tag_id, tag_name, present, changed_at)
SELECT $1, x.* FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::timestamptz[])
    AS x(e, i, n, p, c)
ORDER BY x.e, x.i
ON CONFLICT (tenant_id, external_userid, tag_id) DO UPDATE SET
    tag_name = EXCLUDED.tag_name, present = EXCLUDED.present, changed_at = EXCLUDED.changed_at
WHERE t.changed_at <= EXCLUDED.changed_at
"""

SELECT_TAG_NAMES = """
SELECT external_userid, array_agg(DISTINCT tag_name) AS tags
FROM segment_contact_tags
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND present
GROUP BY external_userid
"""

# Erasure (PIPL): facts and their lines, follows, tags and identities go; the profile row stays
# as the tombstone (status 'erased', no attributes) so later events never recreate it. The lines
# go first, found through the contact's facts (the facts' contact index and the lines' primary
# key: the lines have no index by contact).
ERASE_LINES = """
DELETE FROM profile_fact_lines l USING profile_facts f
WHERE f.tenant_id = $1 AND f.external_userid = ANY($2::text[])
  AND l.tenant_id = f.tenant_id AND l.event_type = f.event_type AND l.event_key = f.event_key
"""
ERASE_FACTS = "DELETE FROM profile_facts WHERE tenant_id = $1 AND external_userid = ANY($2::text[])"
ERASE_FOLLOWS = "DELETE FROM segment_follows WHERE tenant_id = $1 AND external_userid = ANY($2::text[])"
ERASE_TAGS = "DELETE FROM segment_contact_tags WHERE tenant_id = $1 AND external_userid = ANY($2::text[])"
ERASE_LINKS = "DELETE FROM identity_links WHERE tenant_id = $1 AND external_userid = ANY($2::text[])"
ERASE_PROFILES = """
UPDATE profiles SET status = 'erased', state = NULL, store_id = NULL, staff_ids = '{}', gender = NULL,
                    first_added_at = NULL, first_added_day = NULL, tags = '{}', updated_at = now()
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
"""


def profile_of(tenant_id: str, row: asyncpg.Record, facts: Sequence[Fact] = ()) -> Profile:
    """The engine's :class:`Profile` of a locked row (and its facts)."""
    return Profile(
        tenant_id=tenant_id,
        external_userid=row["external_userid"],
        state=row["state"],
        store_id=row["store_id"],
        staff_ids=frozenset(row["staff_ids"]),
        gender=row["gender"],
        status=row["status"],
        first_added_at=row["first_added_at"],
        first_added_day=row["first_added_day"],
        tags=frozenset(row["tags"]),
        facts=tuple(facts),
    )


async def ensure_and_lock(
    conn: Conn, tenant_id: str, euids: Collection[str]
) -> tuple[list[asyncpg.Record], set[str]]:
    """Create the missing profile rows of ``euids``, then lock all of them (key order); returns
    the locked rows and the contacts whose rows were created (no facts of theirs are stored)."""
    keys = sorted(euids)
    if not keys:
        return [], set()
    created = {r[0] for r in await conn.fetch(ENSURE_PROFILES, tenant_id, keys)}
    return await conn.fetch(LOCK_PROFILES, tenant_id, keys), created


async def bump_facts_seq(conn: Conn, tenant_id: str, euids: Collection[str]) -> None:
    """Move on the facts sequence of contacts whose facts this transaction changed (rows locked):
    what any cache holds of their facts is no longer theirs (:mod:`tag_svc.processor.fact_cache`)."""
    if euids:
        await conn.execute(BUMP_FACTS_SEQ, tenant_id, sorted(euids))


async def lock_skip_locked(conn: Conn, tenant_id: str, euids: Collection[str]) -> list[asyncpg.Record]:
    """Lock the existing profile rows of ``euids`` that nobody else holds."""
    return await conn.fetch(LOCK_PROFILES_SKIP_LOCKED, tenant_id, sorted(euids))


async def lock_chunk(conn: Conn, tenant_id: str, after: str, limit: int) -> list[asyncpg.Record]:
    """Lock the next ``limit`` profile rows after ``after`` (key order)."""
    return await conn.fetch(LOCK_CHUNK, tenant_id, after, limit)


async def load_facts(
    conn: Conn, tenant_id: str, euids: Collection[str], types: Collection[str], *, lines: bool
) -> dict[str, list[Fact]]:
    """The facts of ``types`` of each contact (with item lines when ``lines``)."""
    if not euids or not types:
        return {}
    keys, kinds = list(euids), sorted(types)
    out: dict[str, list[Fact]] = defaultdict(list)
    if not lines:
        for r in await conn.fetch(SELECT_FACTS, tenant_id, keys, kinds):
            out[r[0]].append(Fact(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
        return out
    for r in await conn.fetch(SELECT_FACTS_WITH_LINES, tenant_id, keys, kinds):
        inline = r[13]
        if inline is not None:
            items = tuple(FactLine(c, s, Decimal(a)) for c, s, a in json.loads(inline))
        elif (categories := r[10]) is not None:
            items = tuple(map(FactLine, categories, r[11], r[12]))
        else:
            items = ()
        out[r[0]].append(Fact(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], items))
    return out


async def insert_facts(
    conn: Conn, tenant_id: str, facts: Iterable[tuple[str, Fact]]
) -> list[tuple[str, Fact]]:
    """Record ``(external_userid, fact)`` pairs not recorded yet, with their lines; returns the
    pairs that were new (a fact whose key is stored already, for whichever contact, is not)."""
    first: dict[tuple[str, str], tuple[str, Fact]] = {}
    for euid, fact in facts:
        first.setdefault((fact.event_type, fact.key), (euid, fact))
    if not first:
        return []
    cols: list[list[Any]] = [[] for _ in range(11)]
    for euid, f in first.values():
        for col, value in zip(cols, fact_columns(euid, f), strict=True):
            col.append(value)
    new = await conn.fetch(INSERT_FACTS, tenant_id, *cols)
    line_cols: list[list[Any]] = [[] for _ in range(8)]
    for r in new:
        euid, fact = first[(r["event_type"], r["event_key"])]
        for n, line in enumerate(fact.lines):
            for col, value in zip(
                line_cols,
                (fact.event_type, fact.key, n, euid, fact.day, line.category, line.sku, line.amount),
                strict=True,
            ):
                col.append(value)
    if line_cols[0]:
        await conn.execute(INSERT_FACT_LINES, tenant_id, *line_cols)
    return [first[(r["event_type"], r["event_key"])] for r in new]


async def write_profiles(conn: Conn, profiles: Sequence[Profile]) -> None:
    """Write the attributes of ``profiles`` (rows already locked)."""
    if profiles:
        await conn.executemany(UPSERT_PROFILE, [profile_args(p) for p in profiles])


async def upsert_follows(conn: Conn, tenant_id: str, changes: Sequence[FollowChange]) -> None:
    if changes:
        await conn.execute(
            UPSERT_FOLLOWS,
            tenant_id,
            [c.external_userid for c in changes],
            [c.staff_id for c in changes],
            [c.added_at for c in changes],
            [c.deleted_at for c in changes],
        )


async def followers(conn: Conn, tenant_id: str, euids: Collection[str]) -> dict[str, frozenset[str]]:
    """The staff actively following each contact (contacts without any are absent)."""
    rows = await conn.fetch(SELECT_FOLLOWERS, tenant_id, list(euids))
    return {r["external_userid"]: frozenset(r["staff_ids"]) for r in rows}


async def upsert_contact_tags(conn: Conn, tenant_id: str, changes: Sequence[ContactTagChange]) -> None:
    if changes:
        await conn.execute(
            UPSERT_CONTACT_TAGS,
            tenant_id,
            [c.external_userid for c in changes],
            [c.tag_id for c in changes],
            [c.tag_name for c in changes],
            [c.present for c in changes],
            [c.changed_at for c in changes],
        )


async def tag_names(conn: Conn, tenant_id: str, euids: Collection[str]) -> dict[str, frozenset[str]]:
    """The names of the tags each contact carries (contacts without any are absent)."""
    rows = await conn.fetch(SELECT_TAG_NAMES, tenant_id, list(euids))
    return {r["external_userid"]: frozenset(r["tags"]) for r in rows}


async def erase(conn: Conn, tenant_id: str, euids: Collection[str]) -> None:
    """Drop the personal data of ``euids`` and leave their tombstones (rows already locked)."""
    keys = sorted(euids)
    for statement in (ERASE_LINES, ERASE_FACTS, ERASE_FOLLOWS, ERASE_TAGS, ERASE_LINKS, ERASE_PROFILES):
        await conn.execute(statement, tenant_id, keys)
