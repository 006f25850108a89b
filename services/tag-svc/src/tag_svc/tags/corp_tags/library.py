"""An in-memory corp tag library with WeCom's semantics: what the local stand-in adapter serves
(WeCom is unreachable locally and in tests) and what tests seed and change "on the WeCom side".

It answers in WeCom's JSON (:meth:`CorpTagLibrary.list_payload`, :meth:`CorpTagLibrary.add_payload`,
:meth:`CorpTagLibrary.edit_payload`, :meth:`CorpTagLibrary.del_payload`) so a test's HTTP stand-in
can serve it as is. Per WeCom's documentation of ``add_corp_tag``: with ``group_id`` the tags go
into that group; else into the group named ``group_name``, created when there is none; a tag name
the group already has is not created again; a group is never empty. ``edit_corp_tag`` renames (or
reorders) the tag or group of that id; ``del_corp_tag`` deletes the tags and groups named, and a
group whose last tag goes goes with it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tag_svc.tags.corp_tags.model import CorpTagGroup, NewCorpTag, parse_corp_tag_group, parse_corp_tag_list

__all__ = ["CorpTagLibrary", "UnknownCorpTag"]


class UnknownCorpTag(LookupError):
    """No live group/tag with that id (WeCom answers an errcode)."""


@dataclass
class _Tag:
    id: str
    name: str
    order: int
    create_time: int
    deleted: bool = False


@dataclass
class _Group:
    group_id: str
    name: str
    order: int
    create_time: int
    tags: list[_Tag] = field(default_factory=list)
    deleted: bool = False


@dataclass
class CorpTagLibrary:
    """One corp's library. ``create_time`` comes from a counter starting at ``epoch`` (unix
    seconds), so items created one after another are ordered even within a second."""

    epoch: int = 1_714_528_800
    _groups: list[_Group] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=itertools.count)

    # --- what tests do on "WeCom's side" ---

    def add_group(self, name: str, tags: Sequence[str | tuple[str, int]], *, order: int = 0) -> CorpTagGroup:
        """Create a group with tags (``name`` or ``(name, order)``); returns it with its ids."""
        return self.add_corp_tag(
            group_name=name,
            order=order,
            tags=[NewCorpTag(t) if isinstance(t, str) else NewCorpTag(*t) for t in tags],
            new_group=True,
        )

    def rename_tag(self, tag_id: str, name: str) -> None:
        self._tag(tag_id).name = name

    def rename_group(self, group_id: str, name: str) -> None:
        self._group(group_id).name = name

    def reorder_tag(self, tag_id: str, order: int) -> None:
        self._tag(tag_id).order = order

    def delete_tag(self, tag_id: str) -> None:
        """Delete a tag (a group losing its last tag goes too, as in WeCom)."""
        tag = self._tag(tag_id)
        tag.deleted = True
        for g in self._groups:
            if tag in g.tags and all(t.deleted for t in g.tags):
                g.deleted = True

    def delete_group(self, group_id: str) -> None:
        group = self._group(group_id)
        group.deleted = True
        for t in group.tags:
            t.deleted = True

    def groups(self) -> list[CorpTagGroup]:
        """The live groups and tags (what ``get_corp_tag_list`` without filters answers)."""
        return parse_corp_tag_list(self.list_payload())

    # --- the API ---

    def list_payload(self) -> dict[str, Any]:
        """``get_corp_tag_list``'s answer: every live group with its live tags."""
        return {
            "errcode": 0,
            "errmsg": "ok",
            "tag_group": [self._group_json(g) for g in self._groups if not g.deleted],
        }

    def add_payload(
        self,
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int = 0,
        tags: Sequence[NewCorpTag] = (),
    ) -> dict[str, Any]:
        """``add_corp_tag``'s answer: the group with the tags just created. Raises
        :class:`UnknownCorpTag` for an unknown ``group_id``, ``ValueError`` without tags or a
        group."""
        if not tags:
            raise ValueError("WeCom creates no empty group: tags required")
        if group_id is not None:
            group = self._group(group_id)
        elif group_name:
            group = next((g for g in self._groups if not g.deleted and g.name == group_name), None)
            if group is None:
                group = _Group(f"et{uuid.uuid4().hex}", group_name, order, self._now())
                self._groups.append(group)
        else:
            raise ValueError("group_id or group_name required")
        created: list[_Tag] = []
        for t in tags:
            if any(not x.deleted and x.name == t.name for x in group.tags):
                continue
            tag = _Tag(f"et{uuid.uuid4().hex}", t.name, t.order, self._now())
            group.tags.append(tag)
            created.append(tag)
        return {"errcode": 0, "errmsg": "ok", "tag_group": self._group_json(group, created)}

    def edit_payload(self, id: str, *, name: str | None = None, order: int | None = None) -> dict[str, Any]:
        """``edit_corp_tag``'s answer: the tag or group ``id`` takes ``name`` and/or ``order``.
        Raises :class:`UnknownCorpTag` when there is no live tag or group of that id."""
        item: _Tag | _Group
        try:
            item = self._tag(id)
        except UnknownCorpTag:
            item = self._group(id)
        if name is not None:
            item.name = name
        if order is not None:
            item.order = order
        return {"errcode": 0, "errmsg": "ok"}

    def del_payload(self, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()) -> dict[str, Any]:
        """``del_corp_tag``'s answer. Raises :class:`UnknownCorpTag` (nothing deleted) when an id
        is no live tag or group, ``ValueError`` when both lists are empty."""
        if not tag_ids and not group_ids:
            raise ValueError("tag_id or group_id required")
        for tag_id in tag_ids:
            self._tag(tag_id)
        for group_id in group_ids:
            self._group(group_id)
        for tag_id in tag_ids:
            self.delete_tag(tag_id)
        for group_id in group_ids:
            self.delete_group(group_id)
        return {"errcode": 0, "errmsg": "ok"}

    def add_corp_tag(
        self,
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int = 0,
        tags: Sequence[NewCorpTag] = (),
        new_group: bool = False,
    ) -> CorpTagGroup:
        if new_group and any(not g.deleted and g.name == group_name for g in self._groups):
            raise ValueError(f"group {group_name!r} exists")
        group = parse_corp_tag_group(
            self.add_payload(group_id=group_id, group_name=group_name, order=order, tags=tags)["tag_group"]
        )
        assert group is not None
        return group

    # --- internals ---

    def _now(self) -> int:
        return self.epoch + next(self._clock)

    def _group(self, group_id: str) -> _Group:
        for g in self._groups:
            if g.group_id == group_id and not g.deleted:
                return g
        raise UnknownCorpTag(group_id)

    def _tag(self, tag_id: str) -> _Tag:
        for g in self._groups:
            for t in g.tags:
                if t.id == tag_id and not t.deleted:
                    return t
        raise UnknownCorpTag(tag_id)

    @staticmethod
    def _group_json(group: _Group, tags: Sequence[_Tag] | None = None) -> dict[str, Any]:
        return {
            "group_id": group.group_id,
            "group_name": group.name,
            "create_time": group.create_time,
            "order": group.order,
            "tag": [
                {"id": t.id, "name": t.name, "create_time": t.create_time, "order": t.order}
                for t in (tags if tags is not None else [t for t in group.tags if not t.deleted])
            ],
        }
