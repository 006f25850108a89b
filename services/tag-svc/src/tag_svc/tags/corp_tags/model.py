"""The pure half of the corp tag sync: WeCom's library as values, parsing WeCom's answer, the
matching rules (:func:`plan_pull`) and the report. No I/O here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "MAX_NAME",
    "CorpTag",
    "CorpTagAdapter",
    "CorpTagGroup",
    "GroupStep",
    "Issue",
    "IssueKind",
    "LocalGroup",
    "LocalTag",
    "NewCorpTag",
    "PullPlan",
    "SyncReport",
    "TagStep",
    "as_pushed",
    "display_order",
    "parse_corp_tag_group",
    "parse_corp_tag_list",
    "plan_pull",
]

MAX_NAME = 64
"""Local names travel in contact-tagged events, which allow 64 characters."""

W = TypeVar("W", "CorpTag", "CorpTagGroup")

IssueKind = Literal[
    "group-name-taken", "tag-name-taken", "wecom-tag-id-taken", "rename-cycle", "invalid-name"
]


# --- WeCom's side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorpTag:
    id: str
    name: str
    order: int
    create_time: int
    """Unix seconds, as WeCom gives it (only used to order ties)."""


@dataclass(frozen=True, slots=True)
class CorpTagGroup:
    group_id: str
    name: str
    order: int
    create_time: int
    tags: tuple[CorpTag, ...] = ()


@dataclass(frozen=True, slots=True)
class NewCorpTag:
    """A tag to create in WeCom (``add_corp_tag``)."""

    name: str
    order: int = 0


class CorpTagAdapter(Protocol):
    """WeCom's corp tag library of a tenant. Raise :class:`~tag_svc.tags.wecom.WeComTagError`."""

    async def corp_tag_list(self, tenant_id: str) -> list[CorpTagGroup]:
        """Every live group with its live tags."""
        ...

    async def add_corp_tag(
        self,
        tenant_id: str,
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int = 0,
        tags: Sequence[NewCorpTag] = (),
    ) -> CorpTagGroup:
        """Add tags to group ``group_id``, or to a group named ``group_name`` (created when WeCom
        has none of that name). Returns the group with the tags WeCom created."""
        ...


def parse_corp_tag_group(raw: Any) -> CorpTagGroup | None:
    """One ``tag_group`` entry of WeCom's answer; ``None`` when deleted. Raises ``ValueError``
    on a malformed entry."""
    if not isinstance(raw, dict):
        raise ValueError("tag_group entry is not an object")
    if raw.get("deleted") is True:
        return None
    tags = []
    raw_tags = raw.get("tag", [])
    if not isinstance(raw_tags, list):
        raise ValueError("tag is not a list")
    for t in raw_tags:
        if not isinstance(t, dict):
            raise ValueError("tag entry is not an object")
        if t.get("deleted") is True:
            continue
        tags.append(CorpTag(_str(t, "id"), _str(t, "name").strip(), _int(t, "order"), _int(t, "create_time")))
    return CorpTagGroup(
        _str(raw, "group_id"),
        _str(raw, "group_name").strip(),
        _int(raw, "order"),
        _int(raw, "create_time"),
        tuple(tags),
    )


def parse_corp_tag_list(payload: Mapping[str, Any]) -> list[CorpTagGroup]:
    """``get_corp_tag_list``'s answer without deleted groups and tags. Raises ``ValueError``."""
    raw = payload.get("tag_group", [])
    if not isinstance(raw, list):
        raise ValueError("tag_group is not a list")
    return [g for g in (parse_corp_tag_group(r) for r in raw) if g is not None]


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} missing")
    return value


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is not an integer")
    return value


def display_order(items: Iterable[W]) -> list[W]:
    """WeCom's display order: larger ``order`` first, then older first, then by id."""
    return sorted(
        items, key=lambda i: (-i.order, i.create_time, i.group_id if isinstance(i, CorpTagGroup) else i.id)
    )


def as_pushed(
    groups: Sequence[CorpTagGroup],
    *,
    renamed: Mapping[str, str],
    deleted: Iterable[str],
) -> list[CorpTagGroup]:
    """WeCom's library as it will be once our pending catalogue pushes are through: the groups
    and tags of ``renamed`` (WeCom id -> name) take their new names, those of ``deleted`` (tag or
    group ids) are gone, and so is a group left without tags (WeCom has no empty groups).

    A pull plans against this, so that an edit made here but not pushed yet is neither undone
    (a renamed tag renamed back) nor resurrected (a deleted tag created again)."""
    gone = frozenset(deleted)
    out: list[CorpTagGroup] = []
    for g in groups:
        if g.group_id in gone:
            continue
        tags = tuple(replace(t, name=renamed.get(t.id, t.name)) for t in g.tags if t.id not in gone)
        if g.tags and not tags:
            continue
        out.append(replace(g, name=renamed.get(g.group_id, g.name), tags=tags))
    return out


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalGroup:
    group_id: uuid.UUID
    name: str
    sort_order: int
    wecom_group_id: str | None


@dataclass(frozen=True, slots=True)
class LocalTag:
    tag_id: uuid.UUID
    group_id: uuid.UUID
    name: str
    sort_order: int
    wecom_tag_id: str | None


@dataclass(frozen=True, slots=True)
class GroupStep:
    """What one WeCom group means locally. ``group_id`` ``None``: create it."""

    wecom_group_id: str
    name: str
    sort_order: int
    group_id: uuid.UUID | None
    link: bool = False
    rename: bool = False
    reorder: bool = False

    @property
    def changes(self) -> bool:
        return self.group_id is None or self.link or self.rename or self.reorder


@dataclass(frozen=True, slots=True)
class TagStep:
    """What one WeCom tag means locally. ``tag_id`` ``None``: create it in the group that mirrors
    ``wecom_group_id``; ``move``: the linked tag moves there."""

    wecom_tag_id: str
    wecom_group_id: str
    name: str
    sort_order: int
    tag_id: uuid.UUID | None
    link: bool = False
    rename: bool = False
    reorder: bool = False
    move: bool = False

    @property
    def changes(self) -> bool:
        return self.tag_id is None or self.link or self.rename or self.reorder or self.move


@dataclass(frozen=True, slots=True)
class Issue:
    """Something the sync could not do (the rest of it was done)."""

    kind: IssueKind
    name: str
    wecom_group_id: str | None = None
    wecom_tag_id: str | None = None
    group_id: uuid.UUID | None = None
    tag_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class PullPlan:
    groups: tuple[GroupStep, ...]
    tags: tuple[TagStep, ...]
    unlink_groups: tuple[LocalGroup, ...]
    unlink_tags: tuple[LocalTag, ...]
    issues: tuple[Issue, ...] = ()


def plan_pull(
    wecom: Sequence[CorpTagGroup], groups: Sequence[LocalGroup], tags: Sequence[LocalTag]
) -> PullPlan:
    """What pulling WeCom's library changes in the local catalogue (the module's matching rules).
    Every WeCom group and tag gets a step (most change nothing); an invalid name is an issue."""
    issues: list[Issue] = []
    live_groups = {g.group_id for g in wecom}
    live_tags = {t.id for g in wecom for t in g.tags}
    group_by_wid = {g.wecom_group_id: g for g in groups if g.wecom_group_id in live_groups}
    free_groups = {g.name: g for g in groups if g.wecom_group_id not in live_groups}
    tag_by_wid = {t.wecom_tag_id: t for t in tags if t.wecom_tag_id in live_tags}
    free_tags = {(t.group_id, t.name): t for t in tags if t.wecom_tag_id not in live_tags}
    claimed_groups: set[uuid.UUID] = set()
    claimed_tags: set[uuid.UUID] = set()
    group_steps: list[GroupStep] = []
    tag_steps: list[TagStep] = []

    for g_rank, wg in enumerate(display_order(wecom), start=1):
        if not _valid(wg.name):
            issues.append(Issue("invalid-name", wg.name, wecom_group_id=wg.group_id))
            continue
        local = group_by_wid.get(wg.group_id)
        link = False
        if local is None:
            candidate = free_groups.get(wg.name)
            if candidate is not None and candidate.group_id not in claimed_groups:
                local, link = candidate, True
        if local is None:
            group_steps.append(GroupStep(wg.group_id, wg.name, g_rank, None))
            target = None
        else:
            claimed_groups.add(local.group_id)
            group_steps.append(
                GroupStep(
                    wg.group_id,
                    wg.name,
                    g_rank,
                    local.group_id,
                    link=link,
                    rename=local.name != wg.name,
                    reorder=local.sort_order != g_rank,
                )
            )
            target = local.group_id

        for t_rank, wt in enumerate(display_order(wg.tags), start=1):
            if not _valid(wt.name):
                issues.append(Issue("invalid-name", wt.name, wecom_group_id=wg.group_id, wecom_tag_id=wt.id))
                continue
            tag = tag_by_wid.get(wt.id)
            link = False
            if tag is None and target is not None:
                candidate = free_tags.get((target, wt.name))
                if candidate is not None and candidate.tag_id not in claimed_tags:
                    tag, link = candidate, True
            if tag is None:
                tag_steps.append(TagStep(wt.id, wg.group_id, wt.name, t_rank, None))
                continue
            claimed_tags.add(tag.tag_id)
            tag_steps.append(
                TagStep(
                    wt.id,
                    wg.group_id,
                    wt.name,
                    t_rank,
                    tag.tag_id,
                    link=link,
                    rename=tag.name != wt.name,
                    reorder=tag.sort_order != t_rank,
                    move=tag.group_id != target,
                )
            )

    unlink_groups = tuple(
        g
        for g in groups
        if g.wecom_group_id is not None
        and g.wecom_group_id not in live_groups
        and g.group_id not in claimed_groups
    )
    unlink_tags = tuple(
        t
        for t in tags
        if t.wecom_tag_id is not None and t.wecom_tag_id not in live_tags and t.tag_id not in claimed_tags
    )
    return PullPlan(tuple(group_steps), tuple(tag_steps), unlink_groups, unlink_tags, tuple(issues))


def _valid(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME


# --- the report ----------------------------------------------------------------------------------


@dataclass
class SyncReport:
    groups_created: int = 0
    groups_linked: int = 0
    groups_renamed: int = 0
    groups_reordered: int = 0
    groups_unlinked: int = 0
    tags_created: int = 0
    tags_linked: int = 0
    tags_renamed: int = 0
    tags_reordered: int = 0
    tags_moved: int = 0
    tags_unlinked: int = 0
    groups_pushed: int = 0
    tags_pushed: int = 0
    unlinked: list[LocalTag] = field(default_factory=list)
    """The tags unlinked (WeCom no longer has their WeCom tag)."""
    issues: list[Issue] = field(default_factory=list)

    def note(self, issue: Issue) -> None:
        # A step retried after a taken name must not report its rename cycle twice.
        if issue not in self.issues:
            self.issues.append(issue)

    def merge(self, other: SyncReport) -> None:
        """Add ``other``'s counts, unlinked tags and issues to this one."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unlinked += other.unlinked
        for issue in other.issues:
            self.note(issue)


_COUNTS = (
    "groups_created",
    "groups_linked",
    "groups_renamed",
    "groups_reordered",
    "groups_unlinked",
    "tags_created",
    "tags_linked",
    "tags_renamed",
    "tags_reordered",
    "tags_moved",
    "tags_unlinked",
    "groups_pushed",
    "tags_pushed",
)
