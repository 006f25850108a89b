"""Identity links (identities table) and their announcement, ``contact-identified``.

:func:`link` runs inside the caller's transaction (the worker's batch, or an API request): it
reads what is linked already, lets :func:`contact_svc.domain.identities.resolve_links` decide,
inserts the new links and enqueues one ``contact-identified`` per request that taught something,
all in that transaction, so an event exists exactly when its link was committed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from contact_svc.domain.identities import (
    IdentityKind,
    IdKey,
    LinkConflict,
    LinkPlan,
    LinkRequest,
    NewLink,
    resolve_links,
)
from scrm_shared.db.outbox import enqueue_events
from scrm_shared.events import ContactIdentified, ContactIdentifiedEvent, new_event

log = logging.getLogger(__name__)

Conn = Connection | PoolConnectionProxy

SOURCE = "contact-svc"
TOPIC = "contact-identified"

IDENTITY_CONFLICTS = Counter(
    "scrm_contact_identity_conflicts",
    "Identity links refused because the id already belongs to another contact",
    ["source", "kind"],
)

SELECT_LINKED = """
SELECT i.tenant_id, i.kind, i.value, i.external_userid
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, kind, value)
JOIN identities i ON i.tenant_id = k.tenant_id AND i.kind = k.kind AND i.value = k.value
"""

SELECT_ERASED = """
SELECT c.tenant_id, c.external_userid
FROM unnest($1::text[], $2::text[]) AS k(tenant_id, external_userid)
JOIN contacts c ON c.tenant_id = k.tenant_id AND c.external_userid = k.external_userid
WHERE c.status = 'erased'
"""

# A concurrent writer may have linked the same id a moment ago: only what this statement really
# inserted is announced.
INSERT_LINKS = """
INSERT INTO identities (tenant_id, kind, value, external_userid, source)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING
RETURNING tenant_id, kind, value
"""

SELECT_KINDS_OF = """
SELECT DISTINCT kind FROM identities WHERE tenant_id = $1 AND external_userid = $2 ORDER BY kind
"""

# An operator's unionid also completes the contact's profile (the friend-added had none).
FILL_CONTACT_UNIONID = """
UPDATE contacts SET unionid = $3, updated_at = now()
WHERE tenant_id = $1 AND external_userid = $2 AND unionid IS NULL AND status <> 'erased'
"""


async def link(conn: Conn, requests: Sequence[LinkRequest], *, all_or_nothing: bool = False) -> LinkPlan:
    """Record the links ``requests`` teach and enqueue their ``contact-identified`` events.

    Returns the plan: ``new`` holds the links recorded, ``conflicts`` the refused ones (report
    them with :func:`report_conflicts` once the transaction committed). With ``all_or_nothing``
    (an operator's request) any conflict records nothing at all.
    """
    if not requests:
        return LinkPlan()
    keys = sorted({k for r in requests for k in r.keys()})
    existing = {
        (r["tenant_id"], r["kind"], r["value"]): r["external_userid"]
        for r in await conn.fetch(SELECT_LINKED, *_columns(keys))
    }
    targets = sorted({(r.tenant_id, r.external_userid) for r in requests if r.external_userid is not None})
    erased: set[tuple[str, str]] = set()
    if targets:
        rows = await conn.fetch(SELECT_ERASED, [t for t, _ in targets], [e for _, e in targets])
        erased = {(r["tenant_id"], r["external_userid"]) for r in rows}
    plan = resolve_links(requests, existing, erased=erased)
    if all_or_nothing and plan.conflicts:
        plan.new = []
    if plan.new:
        ordered = sorted(plan.new, key=lambda n: (n.tenant_id, n.kind, n.value))
        inserted = {
            (r["tenant_id"], r["kind"], r["value"])
            for r in await conn.fetch(
                INSERT_LINKS,
                [n.tenant_id for n in ordered],
                [n.kind for n in ordered],
                [n.value for n in ordered],
                [n.external_userid for n in ordered],
                [n.source for n in ordered],
            )
        }
        plan.new = [n for n in plan.new if (n.tenant_id, n.kind, n.value) in inserted]
        await _enqueue_all(conn, identified_events(plan.new))
    return plan


def identified_events(links: Sequence[NewLink]) -> list[ContactIdentifiedEvent]:
    """One ``contact-identified`` per request that taught new links (its new ids together)."""
    by_origin: dict[int, list[NewLink]] = defaultdict(list)
    for n in links:
        by_origin[n.origin].append(n)
    events = []
    for origin in sorted(by_origin):
        group = by_origin[origin]
        first = group[0]
        ids: dict[IdentityKind, str] = {n.kind: n.value for n in group}
        events.append(
            new_event(
                ContactIdentifiedEvent,
                tenant_id=first.tenant_id,
                source=SOURCE,
                occurred_at=first.at,
                data=ContactIdentified(
                    external_userid=first.external_userid,
                    unionid=ids.get("unionid"),
                    member_id=ids.get("member_id"),
                    phone_hash=ids.get("phone_hash"),
                    source=first.source,
                    identified_at=first.at,
                ),
            )
        )
    return events


async def fill_contact_unionid(conn: Conn, tenant_id: str, external_userid: str, unionid: str) -> None:
    """Set the contact's unionid when it has none (an operator linked it)."""
    await conn.execute(FILL_CONTACT_UNIONID, tenant_id, external_userid, unionid)


async def linked_kinds(conn: Conn, tenant_id: str, external_userid: str) -> list[str]:
    """Which kinds of ids are linked to this contact (never the values)."""
    return [r["kind"] for r in await conn.fetch(SELECT_KINDS_OF, tenant_id, external_userid)]


async def _enqueue_all(conn: Conn, events: Sequence[ContactIdentifiedEvent]) -> None:
    """Enqueue ``events`` in the caller's transaction with one pipelined statement.

    A batch that teaches thousands of links would otherwise pay one round trip per event (a third
    of the worker's throughput). Rows are exactly what :func:`enqueue_event` writes: the shared
    INSERT_ROW and its documented header format, with the trace context of the current span.
    """
    await enqueue_events(conn, TOPIC, events)


def report_conflicts(conflicts: Sequence[LinkConflict]) -> None:
    """Count and log refused links: kind and source only, never the ids (personal data)."""
    for c in conflicts:
        IDENTITY_CONFLICTS.labels(source=c.source, kind=c.kind).inc()
        log.warning(
            "identity already linked to another contact; link kept as it was",
            extra={"tenant_id": c.tenant_id, "identity_kind": c.kind, "link_source": c.source},
        )


def _columns(keys: Sequence[IdKey]) -> list[list[str]]:
    return [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]
