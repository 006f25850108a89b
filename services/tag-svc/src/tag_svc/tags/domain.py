"""Pure rules of tagging: what a request changes, what WeCom's edit means, which events and pushes
a change makes, how a bulk job advances. No I/O here: the store decides concurrency (a row that
already exists is not inserted twice), these functions decide everything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from scrm_shared.events import ContactTagged, ContactTaggedEvent, new_event

__all__ = [
    "MAX_JOB_CONTACTS",
    "Action",
    "Actor",
    "By",
    "Change",
    "Conflict",
    "JobStatus",
    "PushPlan",
    "TagRef",
    "WeComDiff",
    "absent",
    "job_status",
    "next_chunk",
    "present",
    "push_backoff",
    "push_plans",
    "tagged_events",
    "unique_in_order",
    "wecom_diff",
]

By = Literal["staff", "operator", "rule", "wecom"]
Action = Literal["add", "remove"]
JobStatus = Literal["queued", "running", "done", "failed"]

MAX_JOB_CONTACTS = 100_000
"""Contacts one bulk job may name."""

SOURCE = "tag-svc"

H = TypeVar("H", bound=Hashable)


class Conflict(Exception):
    """A catalogue change would break a uniqueness rule; nothing was written.

    ``what``: ``group-name`` (a live group of the tenant has the name), ``tag-name`` (a live tag
    of the group has it) or ``wecom-tag-id`` (a live tag of the tenant mirrors that WeCom tag).
    """

    def __init__(self, what: Literal["group-name", "tag-name", "wecom-tag-id"]) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True, slots=True)
class TagRef:
    """A tag as events and pushes need it (its name and group at the time of the change)."""

    tag_id: uuid.UUID
    name: str
    group_name: str | None
    wecom_tag_id: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """One contact gained or lost one tag (a row really changed)."""

    external_userid: str
    tag: TagRef
    change: Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes tags: ``by`` and ``actor_id`` go into the event; ``staff_id`` is the guide
    whose WeCom relation the change belongs to (pushed as that staff member), when known."""

    by: By
    actor_id: str | None = None
    staff_id: str | None = None


@dataclass(frozen=True, slots=True)
class PushPlan:
    """One mark_tag call to make for a contact: WeCom tag ids to add or remove.

    ``staff_id`` is ``None`` when the pusher must choose whom to push as.
    """

    external_userid: str
    staff_id: str | None
    add_tag: tuple[str, ...] = ()
    remove_tag: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WeComDiff:
    """What one staff member's new WeCom tag set means for the contact's tags here."""

    add: tuple[TagRef, ...]
    remove: tuple[TagRef, ...]
    unknown: tuple[str, ...]
    """WeCom tag ids that changed but map to no tag here (ignored, counted)."""


def unique_in_order(items: Iterable[H]) -> list[H]:
    """``items`` without repeats, first occurrence first."""
    return list(dict.fromkeys(items))


def absent(current: Collection[H], requested: Iterable[H]) -> list[H]:
    """The requested items not yet in ``current``: what an add changes (nothing for a repeat)."""
    return [t for t in unique_in_order(requested) if t not in current]


def present(current: Collection[H], requested: Iterable[H]) -> list[H]:
    """The requested items that are in ``current``: what a removal changes."""
    return [t for t in unique_in_order(requested) if t in current]


def wecom_diff(
    old: Collection[str],
    new: Collection[str],
    mapping: Mapping[str, TagRef],
    held_elsewhere: Collection[str] = (),
) -> WeComDiff:
    """Turn a staff member's WeCom tag set (``old`` -> ``new``, WeCom tag ids) into tag changes.

    ``mapping`` maps WeCom tag ids to live tags here; ``held_elsewhere`` are the WeCom tag ids
    other staff members still have on the contact. A tag one staff member removed stays while
    another one's relation carries it: WeCom tags live per relation, ours per contact.
    """
    old_set, new_set = frozenset(old), frozenset(new)
    added = sorted(new_set - old_set)
    removed = sorted(old_set - new_set)
    held = frozenset(held_elsewhere)
    return WeComDiff(
        add=tuple(mapping[w] for w in added if w in mapping),
        remove=tuple(mapping[w] for w in removed if w in mapping and w not in held),
        unknown=tuple(w for w in (*added, *removed) if w not in mapping),
    )


def tagged_events(
    tenant_id: str, changes: Sequence[Change], actor: Actor, at: datetime
) -> list[ContactTaggedEvent]:
    """One ``contact-tagged`` event per change, in order."""
    return [
        new_event(
            ContactTaggedEvent,
            tenant_id=tenant_id,
            source=SOURCE,
            occurred_at=at,
            data=ContactTagged(
                external_userid=c.external_userid,
                tag_id=str(c.tag.tag_id),
                tag_name=c.tag.name,
                group_name=c.tag.group_name,
                change=c.change,
                by=actor.by,
                actor_id=actor.actor_id,
                tagged_at=at,
            ),
        )
        for c in changes
    ]


def push_plans(changes: Sequence[Change], actor: Actor) -> list[PushPlan]:
    """The mark_tag calls that carry ``changes`` to WeCom: per contact, one call for its adds and
    one for its removals, only for tags synced with WeCom.

    Changes made *by* WeCom are never pushed back: WeCom already has them, and pushing them would
    make WeCom announce them again (an echo loop).
    """
    if actor.by == "wecom":
        return []
    adds: dict[str, list[str]] = {}
    removes: dict[str, list[str]] = {}
    for c in changes:
        if c.tag.wecom_tag_id is None:
            continue
        target = adds if c.change == "added" else removes
        target.setdefault(c.external_userid, []).append(c.tag.wecom_tag_id)
    plans = [PushPlan(e, actor.staff_id, add_tag=tuple(unique_in_order(w))) for e, w in adds.items()]
    plans += [PushPlan(e, actor.staff_id, remove_tag=tuple(unique_in_order(w))) for e, w in removes.items()]
    return plans


def next_chunk(total: int, processed: int, size: int) -> int:
    """How many contacts the next chunk of a job takes (0 when the job is complete)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return max(0, min(size, total - processed))


def job_status(total: int, processed: int) -> JobStatus:
    """A job's status once ``processed`` of ``total`` contacts were handled."""
    if processed >= total:
        return "done"
    return "running" if processed > 0 else "queued"


def push_backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """Wait before retry number ``attempts`` (1-based) of a push: doubling from ``base``, at most
    ``cap``."""
    if attempts < 1:
        return timedelta(0)
    # Past ~2**20 the product only overflows; the cap has long been reached.
    return min(cap, base * 2 ** min(attempts - 1, 20))
