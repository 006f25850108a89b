"""Syncing the tag catalogue with WeCom's corp tag library (企业客户标签).

WeCom is the source of truth for synced groups and tags. A pull (:func:`pull`) reads WeCom's
library (``externalcontact/get_corp_tag_list``) and, for every WeCom group and tag, finds the
local one it mirrors:

1. the local group/tag already linked to that WeCom id;
2. else a live local group of the same name that mirrors no live WeCom group, or a tag of the same
   name in the matched group that mirrors no live WeCom tag: it is linked;
3. else one is created (with the WeCom ids).

Linked items take WeCom's name and order (a tag linked by id that sits in another local group
moves to the matched one). Local items linked to a WeCom id WeCom no longer has are unlinked and
reported, never deleted. Local-only items are left alone; :func:`push_local` creates them in WeCom
(``add_corp_tag``) and stores the ids WeCom gives them.

WeCom's ``order`` sorts descending (larger first), ours ascending, and WeCom's range does not fit
our integer column: a synced item's ``sort_order`` is its 1-based position in WeCom's list (order
descending, then creation time, then id).

- :mod:`.model`: WeCom's library as values, parsing its answer, the matching (:func:`plan_pull`)
  and the report; pure.
- :mod:`.apply`: a plan written in the caller's transaction (:func:`pull`), through the
  catalogue's own statements (a tag rename also reaches the segments: :mod:`tag_svc.tags.edits`,
  never pushed back). Every write is in its own savepoint: a name taken locally is
  retried once the other writes are done (a chain of renames resolves) and then reported, and a
  tag rename that would close a cycle of tag rules is skipped and reported (the tags API's rename
  guard), never failing the whole sync. The pull plans against WeCom's library as it will be once
  the renames and deletions made here and not pushed yet are through (:func:`as_pushed`).
- :mod:`.library`: an in-memory corp tag library with WeCom's semantics, behind the local
  stand-in adapter (:class:`~tag_svc.tags.wecom.RecordingAdapter`) and tests.
"""

from tag_svc.tags.corp_tags.apply import apply_pull, pull, push_local
from tag_svc.tags.corp_tags.library import CorpTagLibrary
from tag_svc.tags.corp_tags.model import (
    MAX_NAME,
    CorpTag,
    CorpTagAdapter,
    CorpTagGroup,
    GroupStep,
    Issue,
    IssueKind,
    LocalGroup,
    LocalTag,
    NewCorpTag,
    PullPlan,
    SyncReport,
    TagStep,
    as_pushed,
    display_order,
    parse_corp_tag_group,
    parse_corp_tag_list,
    plan_pull,
)

__all__ = [
    "MAX_NAME",
    "CorpTag",
    "CorpTagAdapter",
    "CorpTagGroup",
    "CorpTagLibrary",
    "GroupStep",
    "Issue",
    "IssueKind",
    "LocalGroup",
    "LocalTag",
    "NewCorpTag",
    "PullPlan",
    "SyncReport",
    "TagStep",
    "apply_pull",
    "as_pushed",
    "display_order",
    "parse_corp_tag_group",
    "parse_corp_tag_list",
    "plan_pull",
    "pull",
    "push_local",
]
