"""Pure rules of identity resolution: which ids belong to which WeCom contact.

Orders from POS or the mall carry a member_id, a phone_hash or a unionid rather than WeCom ids.
Whenever contact-svc sees two of them together (a friend-added with a unionid, an order with an
external_userid and a member_id, an operator linking a member card) it records the link and
announces it once. An id already linked to another contact is a *conflict*: the existing link is
kept, the new one is dropped and reported (without the values, which are personal data).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from scrm_shared.events import ContactUpdatedEvent, Event, FriendAddedEvent, OrderPlacedEvent

__all__ = [
    "IdentityKind",
    "LinkConflict",
    "LinkPlan",
    "LinkRequest",
    "LinkSource",
    "NewLink",
    "check_phone_hash",
    "link_requests",
    "resolve_links",
]

IdentityKind = Literal["unionid", "member_id", "phone_hash"]
LinkSource = Literal["friend-added", "contact-updated", "api", "order"]
IDENTITY_KINDS: tuple[IdentityKind, ...] = ("unionid", "member_id", "phone_hash")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Digits with the separators people type into phone fields: a raw phone number sent by mistake.
_PHONE_LIKE = re.compile(r"\+?\(?[0-9][0-9 ()\-.]{5,24}")

PHONE_HASH_RULE = (
    "phone_hash must be the SHA-256 of the E.164 phone number as 64 lowercase hex characters, "
    "e.g. sha256('+8613800138000')"
)


def check_phone_hash(value: str) -> str:
    """Return ``value`` if it is 64 lowercase hex; else raise ``ValueError`` saying what to send.

    A raw phone number gets its own message: it must be hashed by the sender, never sent (the
    message never quotes the value).
    """
    if _SHA256_HEX.fullmatch(value):
        return value
    if _PHONE_LIKE.fullmatch(value.strip()):
        raise ValueError(
            "phone_hash looks like a raw phone number, which is never accepted: send sha256 of the "
            "E.164 form (e.g. sha256('+8613800138000')) as 64 lowercase hex characters"
        )
    if re.fullmatch(r"[0-9A-Fa-f]{64}", value):
        raise ValueError(f"{PHONE_HASH_RULE}; upper-case hex is not accepted")
    raise ValueError(PHONE_HASH_RULE)


IdKey = tuple[str, IdentityKind, str]
"""(tenant_id, kind, value) of one identity."""


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """Ids seen together: link them to ``external_userid`` (or, when it is unknown, to the
    contact one of them is already linked to)."""

    tenant_id: str
    source: LinkSource
    at: datetime
    ids: tuple[tuple[IdentityKind, str], ...]
    external_userid: str | None = None

    def keys(self) -> list[IdKey]:
        return [(self.tenant_id, kind, value) for kind, value in self.ids]


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link to record; ``origin`` is the index of the request it came from."""

    tenant_id: str
    kind: IdentityKind
    value: str
    external_userid: str
    source: LinkSource
    at: datetime
    origin: int


@dataclass(frozen=True, slots=True)
class LinkConflict:
    """An id of a request that is already linked to another contact (or ids that point to two
    different contacts). Carries no values: it is logged and counted."""

    tenant_id: str
    kind: IdentityKind
    source: LinkSource


@dataclass
class LinkPlan:
    new: list[NewLink] = field(default_factory=list)
    known: list[IdentityKind] = field(default_factory=list)
    conflicts: list[LinkConflict] = field(default_factory=list)


def link_requests(events: Iterable[Event]) -> list[LinkRequest]:
    """The links a batch of events teaches, in batch order."""
    out: list[LinkRequest] = []
    for e in events:
        if isinstance(e, FriendAddedEvent) and e.data.unionid is not None:
            out.append(
                LinkRequest(
                    tenant_id=e.tenant_id,
                    source="friend-added",
                    at=e.data.added_at,
                    ids=(("unionid", e.data.unionid),),
                    external_userid=e.data.external_userid,
                )
            )
        elif isinstance(e, ContactUpdatedEvent) and e.data.unionid is not None:
            out.append(
                LinkRequest(
                    tenant_id=e.tenant_id,
                    source="contact-updated",
                    at=e.data.updated_at,
                    ids=(("unionid", e.data.unionid),),
                    external_userid=e.data.external_userid,
                )
            )
        elif isinstance(e, OrderPlacedEvent):
            c = e.data.customer
            ids = tuple(
                (kind, value)
                for kind, value in (
                    ("unionid", c.unionid),
                    ("member_id", c.member_id),
                    ("phone_hash", c.phone_hash),
                )
                if value is not None
            )
            # One id alone teaches nothing; with the external_userid one is enough.
            if len(ids) >= (1 if c.external_userid is not None else 2):
                out.append(
                    LinkRequest(
                        tenant_id=e.tenant_id,
                        source="order",
                        at=e.data.placed_at,
                        ids=ids,  # type: ignore[arg-type]
                        external_userid=c.external_userid,
                    )
                )
    return out


def resolve_links(
    requests: Iterable[LinkRequest],
    existing: Mapping[IdKey, str],
    *,
    erased: Iterable[tuple[str, str]] = (),
) -> LinkPlan:
    """Decide, request by request, which links are new, already known or conflicting.

    ``existing`` maps the ids the database knows to their external_userid; links decided earlier
    in the same call count as known to later requests. Requests about an ``erased`` contact
    (tenant_id, external_userid) are ignored: erasure removed its identities for good.
    """
    known: MutableMapping[IdKey, str] = dict(existing)
    gone = set(erased)
    plan = LinkPlan()
    for origin, req in enumerate(requests):
        owners = {known[k] for k in req.keys() if k in known}
        target = req.external_userid
        if target is None:
            if len(owners) != 1:
                # nothing linked yet (nothing to learn) or linked to two contacts (a conflict)
                if len(owners) > 1:
                    plan.conflicts.extend(LinkConflict(req.tenant_id, k, req.source) for k, _ in req.ids)
                continue
            (target,) = owners
        if (req.tenant_id, target) in gone:
            continue
        for kind, value in req.ids:
            key = (req.tenant_id, kind, value)
            owner = known.get(key)
            if owner is None:
                known[key] = target
                plan.new.append(NewLink(req.tenant_id, kind, value, target, req.source, req.at, origin))
            elif owner == target:
                plan.known.append(kind)
            else:
                plan.conflicts.append(LinkConflict(req.tenant_id, kind, req.source))
    return plan
