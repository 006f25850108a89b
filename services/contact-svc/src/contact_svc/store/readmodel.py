"""Writes of the contacts read model (the worker's side): one statement per kind of row per batch.

Every statement takes parallel arrays (``unnest``) so a batch of thousands of events costs a
handful of round trips. Rows are passed sorted by key, so concurrent writers (the worker, a
transfer, an erasure) lock contacts and follows in one order. The upserts repeat the merges of
:mod:`contact_svc.domain.contacts` in SQL, so what the database holds and what a batch brings
combine the same way in either order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from contact_svc.domain.contacts import (
    FollowKey,
    FollowState,
    ReadModelPlan,
    contact_status,
    fold_follows,
    undo_transfer,
    without_personal_data,
)

Conn = Connection | PoolConnectionProxy

INSERT_STORES_SEEN = """
INSERT INTO stores (tenant_id, store_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
"""

INSERT_STAFF_SEEN = """
INSERT INTO staff (tenant_id, staff_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
"""

# Profile fields: a newer profile (profile_at) overwrites what it carries, an older one fills gaps;
# an erased contact gets no personal data back. first_added_at keeps the earliest add (LEAST
# ignores NULLs). Every conflicting row is updated (updated_at), which also locks it for the rest
# of the transaction.
UPSERT_CONTACTS = """
INSERT INTO contacts AS c
    (tenant_id, external_userid, first_added_at, profile_at, name, avatar, gender, unionid)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
    $5::text[], $6::text[], $7::smallint[], $8::text[]
)
ON CONFLICT (tenant_id, external_userid) DO UPDATE SET
    first_added_at = LEAST(c.first_added_at, EXCLUDED.first_added_at),
    name = CASE
        WHEN c.status = 'erased' THEN NULL
        WHEN c.profile_at IS NULL OR EXCLUDED.profile_at >= c.profile_at THEN COALESCE(EXCLUDED.name, c.name)
        ELSE COALESCE(c.name, EXCLUDED.name) END,
    avatar = CASE
        WHEN c.status = 'erased' THEN NULL
        WHEN c.profile_at IS NULL OR EXCLUDED.profile_at >= c.profile_at THEN COALESCE(EXCLUDED.avatar, c.avatar)
        ELSE COALESCE(c.avatar, EXCLUDED.avatar) END,
    gender = CASE
        WHEN c.status = 'erased' THEN c.gender
        WHEN c.profile_at IS NULL OR EXCLUDED.profile_at >= c.profile_at THEN COALESCE(EXCLUDED.gender, c.gender)
        ELSE COALESCE(c.gender, EXCLUDED.gender) END,
    unionid = CASE WHEN c.status = 'erased' THEN NULL ELSE COALESCE(c.unionid, EXCLUDED.unionid) END,
    profile_at = CASE WHEN c.status = 'erased' THEN c.profile_at ELSE GREATEST(c.profile_at, EXCLUDED.profile_at) END,
    updated_at = now()
RETURNING tenant_id, external_userid, status
"""

# The two registers of domain.contacts.FollowState: the add (newest added_at wins) and the status
# (newest event wins; at equal times a delete wins). Ties beyond that compare text in "C" order,
# the code-point order the Python merge uses, so both agree on every input.
UPSERT_FOLLOWS = """
INSERT INTO follows AS f
    (tenant_id, external_userid, staff_id, state, store_id, added_at,
     status, deleted_by, delete_source, deleted_at, last_event_at)
SELECT x.tenant_id, x.external_userid, x.staff_id, x.state,
       -- attribution: the event's store, else the store of the channel code that brought the friend
       CASE WHEN x.added_at IS NOT NULL THEN COALESCE(x.store_id, ch.store_id) END,
       x.added_at, x.status, x.deleted_by, x.delete_source, x.deleted_at, x.last_event_at
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
    $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[]
) WITH ORDINALITY AS x(tenant_id, external_userid, staff_id, state, store_id, added_at,
                       status, deleted_by, delete_source, deleted_at, last_event_at, n)
LEFT JOIN channels ch ON ch.tenant_id = x.tenant_id AND ch.state = x.state
ORDER BY x.n
ON CONFLICT (tenant_id, external_userid, staff_id) DO UPDATE SET
    added_at = CASE WHEN (EXCLUDED.added_at, EXCLUDED.state COLLATE "C", COALESCE(EXCLUDED.store_id, '') COLLATE "C")
                       > (COALESCE(f.added_at, '-infinity'), f.state COLLATE "C", COALESCE(f.store_id, '') COLLATE "C")
                    THEN EXCLUDED.added_at ELSE f.added_at END,
    state = CASE WHEN (EXCLUDED.added_at, EXCLUDED.state COLLATE "C", COALESCE(EXCLUDED.store_id, '') COLLATE "C")
                    > (COALESCE(f.added_at, '-infinity'), f.state COLLATE "C", COALESCE(f.store_id, '') COLLATE "C")
                 THEN EXCLUDED.state ELSE f.state END,
    store_id = CASE WHEN (EXCLUDED.added_at, EXCLUDED.state COLLATE "C", COALESCE(EXCLUDED.store_id, '') COLLATE "C")
                       > (COALESCE(f.added_at, '-infinity'), f.state COLLATE "C", COALESCE(f.store_id, '') COLLATE "C")
                    THEN EXCLUDED.store_id ELSE f.store_id END,
    status = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.status = 'deleted',
                        COALESCE(EXCLUDED.deleted_by, '') COLLATE "C", COALESCE(EXCLUDED.delete_source, '') COLLATE "C")
                     > (f.last_event_at, f.status = 'deleted',
                        COALESCE(f.deleted_by, '') COLLATE "C", COALESCE(f.delete_source, '') COLLATE "C")
                  THEN EXCLUDED.status ELSE f.status END,
    deleted_by = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.status = 'deleted',
                            COALESCE(EXCLUDED.deleted_by, '') COLLATE "C", COALESCE(EXCLUDED.delete_source, '') COLLATE "C")
                         > (f.last_event_at, f.status = 'deleted',
                            COALESCE(f.deleted_by, '') COLLATE "C", COALESCE(f.delete_source, '') COLLATE "C")
                      THEN EXCLUDED.deleted_by ELSE f.deleted_by END,
    delete_source = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.status = 'deleted',
                               COALESCE(EXCLUDED.deleted_by, '') COLLATE "C", COALESCE(EXCLUDED.delete_source, '') COLLATE "C")
                            > (f.last_event_at, f.status = 'deleted',
                               COALESCE(f.deleted_by, '') COLLATE "C", COALESCE(f.delete_source, '') COLLATE "C")
                         THEN EXCLUDED.delete_source ELSE f.delete_source END,
    deleted_at = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.status = 'deleted',
                            COALESCE(EXCLUDED.deleted_by, '') COLLATE "C", COALESCE(EXCLUDED.delete_source, '') COLLATE "C")
                         > (f.last_event_at, f.status = 'deleted',
                            COALESCE(f.deleted_by, '') COLLATE "C", COALESCE(f.delete_source, '') COLLATE "C")
                      THEN EXCLUDED.deleted_at ELSE f.deleted_at END,
    last_event_at = GREATEST(f.last_event_at, EXCLUDED.last_event_at)
"""

# Edits of known relations update them; an edit of a relation not seen yet (its friend-added is
# still on its way) creates it as active at the edit's time. tag_ids travel as JSON arrays
# because unnest cannot take a ragged text[][].
APPLY_EDITS = """
WITH x AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::timestamptz[],
        $5::bool[], $6::text[], $7::bool[], $8::text[], $9::bool[], $10::text[]
    ) AS x(tenant_id, external_userid, staff_id, at,
           set_remark, remark, set_description, description, set_tags, tag_ids)
),
updated AS (
    UPDATE follows f SET
        remark = CASE WHEN x.set_remark THEN x.remark ELSE f.remark END,
        description = CASE WHEN x.set_description THEN x.description ELSE f.description END,
        tag_ids = CASE WHEN x.set_tags THEN ARRAY(SELECT jsonb_array_elements_text(x.tag_ids::jsonb))
                       ELSE f.tag_ids END
    FROM x
    WHERE f.tenant_id = x.tenant_id AND f.external_userid = x.external_userid AND f.staff_id = x.staff_id
    RETURNING f.tenant_id, f.external_userid, f.staff_id
)
INSERT INTO follows (tenant_id, external_userid, staff_id, remark, description, tag_ids, status, last_event_at)
SELECT x.tenant_id, x.external_userid, x.staff_id,
       CASE WHEN x.set_remark THEN x.remark END,
       CASE WHEN x.set_description THEN x.description END,
       CASE WHEN x.set_tags THEN ARRAY(SELECT jsonb_array_elements_text(x.tag_ids::jsonb)) END,
       'active', x.at
FROM x
WHERE NOT EXISTS (
    SELECT 1 FROM updated u
    WHERE u.tenant_id = x.tenant_id AND u.external_userid = x.external_userid AND u.staff_id = x.staff_id
)
ON CONFLICT DO NOTHING
"""

SELECT_FOLLOW_STATUSES = """
SELECT k.tenant_id, k.external_userid, c.status,
       COALESCE(array_agg(f.status) FILTER (WHERE f.status IS NOT NULL), '{}') AS follow_statuses
FROM unnest($1::text[], $2::text[]) AS k(tenant_id, external_userid)
JOIN contacts c ON c.tenant_id = k.tenant_id AND c.external_userid = k.external_userid
LEFT JOIN follows f ON f.tenant_id = k.tenant_id AND f.external_userid = k.external_userid
GROUP BY k.tenant_id, k.external_userid, c.status
"""

UPDATE_CONTACT_STATUS = """
UPDATE contacts c SET status = x.status, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS x(tenant_id, external_userid, status)
WHERE c.tenant_id = x.tenant_id AND c.external_userid = x.external_userid
  AND c.status <> 'erased' AND c.status <> x.status
"""

# transfer-failed: the newest waiting transfer of that customer to that staff member failed.
FAIL_TRANSFER_ITEMS = """
WITH x AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        AS x(tenant_id, external_userid, to_staff, reason)
),
target AS (
    SELECT DISTINCT ON (ti.tenant_id, ti.external_userid, t.to_staff)
           ti.tenant_id, ti.transfer_id, ti.external_userid, t.from_staff, t.to_staff, x.reason
    FROM x
    JOIN transfers t ON t.tenant_id = x.tenant_id AND t.to_staff = x.to_staff
    JOIN transfer_items ti ON ti.tenant_id = t.tenant_id AND ti.transfer_id = t.transfer_id
                          AND ti.external_userid = x.external_userid
    WHERE ti.status = 'waiting'
    ORDER BY ti.tenant_id, ti.external_userid, t.to_staff, ti.transferred_at DESC
)
UPDATE transfer_items ti SET status = 'failed', fail_reason = target.reason
FROM target
WHERE ti.tenant_id = target.tenant_id AND ti.transfer_id = target.transfer_id
  AND ti.external_userid = target.external_userid
RETURNING ti.tenant_id, ti.external_userid, target.to_staff, target.from_staff
"""


async def apply_read_model(conn: Conn, plan: ReadModelPlan) -> None:
    """Apply one batch's folded changes inside the caller's transaction."""
    if plan.stores:
        await conn.execute(INSERT_STORES_SEEN, *_columns(plan.stores, 2))
    if plan.staff:
        await conn.execute(INSERT_STAFF_SEEN, *_columns(plan.staff, 2))
    erased: set[tuple[str, str]] = set()
    if plan.contacts:
        rows = await conn.fetch(
            UPSERT_CONTACTS,
            [p.tenant_id for p in plan.contacts],
            [p.external_userid for p in plan.contacts],
            [p.first_added_at for p in plan.contacts],
            [p.profile_at for p in plan.contacts],
            [p.name for p in plan.contacts],
            [p.avatar for p in plan.contacts],
            [p.gender for p in plan.contacts],
            [p.unionid for p in plan.contacts],
        )
        erased = {(r["tenant_id"], r["external_userid"]) for r in rows if r["status"] == "erased"}

    follows: dict[FollowKey, list[FollowState]] = defaultdict(list)
    for key, state in plan.follows:
        follows[key].append(state)
    touched = set(plan.contact_keys)
    if plan.transfer_failures:
        failed = await conn.fetch(
            FAIL_TRANSFER_ITEMS,
            [f.tenant_id for f in plan.transfer_failures],
            [f.external_userid for f in plan.transfer_failures],
            [f.to_staff for f in plan.transfer_failures],
            [f.reason for f in plan.transfer_failures],
        )
        by_key = {(f.tenant_id, f.external_userid, f.to_staff): f for f in plan.transfer_failures}
        for r in failed:
            failure = by_key[(r["tenant_id"], r["external_userid"], r["to_staff"])]
            for key, state in undo_transfer(failure, r["from_staff"]):
                follows[key].append(state)
            touched.add((failure.tenant_id, failure.external_userid))
    if follows:
        await upsert_follows(conn, [(k, fold_follows(follows[k])) for k in sorted(follows)])

    if plan.edits:
        edits = [
            without_personal_data(e) if (e.tenant_id, e.external_userid) in erased else e for e in plan.edits
        ]
        await conn.execute(
            APPLY_EDITS,
            [e.tenant_id for e in edits],
            [e.external_userid for e in edits],
            [e.staff_id for e in edits],
            [e.at for e in edits],
            [e.set_remark for e in edits],
            [e.remark for e in edits],
            [e.set_description for e in edits],
            [e.description for e in edits],
            [e.set_tags for e in edits],
            [json.dumps(list(e.tag_ids)) for e in edits],
        )
    if touched:
        await refresh_contact_status(conn, sorted(touched))


async def upsert_follows(conn: Conn, rows: Sequence[tuple[FollowKey, FollowState]]) -> None:
    """Merge ``rows`` (one per relation, sorted by key) into the follows table."""
    await conn.execute(
        UPSERT_FOLLOWS,
        [k[0] for k, _ in rows],
        [k[1] for k, _ in rows],
        [k[2] for k, _ in rows],
        [s.state for _, s in rows],
        [s.store_id for _, s in rows],
        [s.added_at for _, s in rows],
        [s.status for _, s in rows],
        [s.deleted_by for _, s in rows],
        [s.delete_source for _, s in rows],
        [s.deleted_at for _, s in rows],
        [s.last_event_at for _, s in rows],
    )


async def refresh_contact_status(conn: Conn, keys: Sequence[tuple[str, str]]) -> None:
    """Re-derive active/lost of these contacts (tenant_id, external_userid) from their follows."""
    rows = await conn.fetch(SELECT_FOLLOW_STATUSES, *_columns(keys, 2))
    changes = [
        (r["tenant_id"], r["external_userid"], status)
        for r in rows
        if (status := contact_status(r["follow_statuses"], erased=r["status"] == "erased")) != r["status"]
    ]
    if changes:
        await conn.execute(UPDATE_CONTACT_STATUS, *_columns(changes, 3))


def _columns(rows: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    return [[row[i] for row in rows] for i in range(width)]
