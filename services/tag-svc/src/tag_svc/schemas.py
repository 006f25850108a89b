"""Request and response models of tag-svc's HTTP API (what /docs shows front-ends)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from scrm_shared.events.primitives import Id
from tag_svc.tags.corp_tags.model import IssueKind
from tag_svc.tags.domain import MAX_JOB_CONTACTS, Action, By, JobStatus

# Names travel in contact-tagged events, which allow 64 characters.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
WeComTagId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="WeCom's corp tag (or group) id, e.g. 'etXXXXXXXXXX'."),
]
Order = Annotated[
    int,
    Field(strict=True, ge=-1_000_000, le=1_000_000, description="Position in lists: lower comes first."),
]


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Patch(_Request):
    """Only the fields given change; ``name`` and ``order`` cannot be null."""

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        for name in ("name", "order"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TagIn(_Request):
    name: Name
    order: Order | None = Field(default=None, description="Omitted: after the group's last tag.")
    wecom_tag_id: WeComTagId | None = None


class TagGroupIn(_Request):
    name: Name
    order: Order | None = Field(default=None, description="Omitted: after the last group.")
    wecom_group_id: WeComTagId | None = None
    tags: list[TagIn] = Field(
        default_factory=list, max_length=500, description="Tags created with the group."
    )

    @model_validator(mode="after")
    def _distinct_names(self) -> Self:
        names = [t.name for t in self.tags]
        if len(set(names)) != len(names):
            raise ValueError("tag names must be unique within the group")
        return self


class TagGroupPatch(_Patch):
    name: Name | None = None
    order: Order | None = None
    wecom_group_id: WeComTagId | None = Field(default=None, description="null unlinks the group from WeCom.")


class TagPatch(_Patch):
    name: Name | None = None
    order: Order | None = None
    group_id: uuid.UUID | None = Field(default=None, description="Move the tag to this group.")
    wecom_tag_id: WeComTagId | None = Field(default=None, description="null unlinks the tag from WeCom.")

    @model_validator(mode="after")
    def _group_not_null(self) -> Self:
        if "group_id" in self.model_fields_set and self.group_id is None:
            raise ValueError("group_id cannot be null")
        return self


class Tag(BaseModel):
    tag_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    name: str
    order: int
    wecom_tag_id: str | None
    created_at: datetime
    updated_at: datetime


class TagGroup(BaseModel):
    group_id: uuid.UUID
    name: str
    order: int
    wecom_group_id: str | None
    created_at: datetime
    updated_at: datetime
    tags: list[Tag] = Field(description="The group's tags, by order.")


class Deletion(BaseModel):
    """The contacts that carried the deleted tags are being untagged by these jobs."""

    job_ids: list[uuid.UUID]


class ContactTagsIn(_Request):
    tag_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class ContactTag(BaseModel):
    tag_id: uuid.UUID
    name: str
    group_id: uuid.UUID
    group_name: str
    wecom_tag_id: str | None
    by: By = Field(description="Who set it: a guide (staff), an operator, a segment rule, or WeCom.")
    actor_id: str | None
    tagged_at: datetime


class ContactTags(BaseModel):
    external_userid: str
    tags: list[ContactTag]


class ContactTagsAdded(ContactTags):
    added: list[uuid.UUID] = Field(description="Tags the contact did not have before this request.")


class TagJobIn(_Request):
    tag_id: uuid.UUID
    action: Action
    external_userids: list[Id] = Field(
        min_length=1, max_length=MAX_JOB_CONTACTS, description="Repeats are handled once."
    )


class TagJob(BaseModel):
    job_id: uuid.UUID
    tag_id: uuid.UUID
    action: Action
    status: JobStatus
    total: int = Field(description="Distinct contacts in the job.")
    processed: int = Field(description="Contacts handled so far.")
    changed: int = Field(description="Contacts whose tags changed (the others had the tag, or did not).")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TagNameSync(BaseModel):
    """A rename of the tag reaching the segments: its contacts re-evaluated, a chunk at a time,
    for the segments reading the old or the new name."""

    sync_id: uuid.UUID
    old_name: str
    new_name: str
    status: JobStatus = Field(
        description="queued, running, done, or failed (given up after repeated errors)."
    )
    total: int = Field(description="Contacts that carried the tag at the rename.")
    processed: int = Field(description="Contacts re-evaluated so far.")
    attempts: int = Field(description="Failed attempts at the current chunk (0 after a success).")
    error: str | None = Field(description="The last error's type, while retrying or once failed.")
    created_at: datetime
    finished_at: datetime | None


class WeComCredentialsIn(_Request):
    """The corp id and the secret of the app allowed to call WeCom's customer-contact APIs
    (客户联系 secret)."""

    corp_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    secret: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]


class WeComCredentials(BaseModel):
    tenant_id: str
    corp_id: str
    has_secret: Literal[True] = True
    updated_at: datetime


class CorpTagSyncIssue(BaseModel):
    """A WeCom group or tag the sync could not (fully) mirror; the rest of the sync was done."""

    kind: IssueKind = Field(
        description="group-name-taken / tag-name-taken: another local group (tag of the group) has "
        "the name, so it was not created, renamed or moved (a linked item still took WeCom's order); "
        "wecom-tag-id-taken: another local tag mirrors it; rename-cycle: the rename would close a "
        "cycle of tag rules (the tag keeps its name); invalid-name: empty or over 64 characters."
    )
    name: str = Field(description="WeCom's name for it.")
    wecom_group_id: str | None
    wecom_tag_id: str | None
    group_id: uuid.UUID | None = Field(description="The local group concerned, if any.")
    tag_id: uuid.UUID | None = Field(description="The local tag concerned, if any.")


class UnlinkedTag(BaseModel):
    """A local tag whose WeCom tag is gone from WeCom: kept, no longer linked."""

    tag_id: uuid.UUID
    group_id: uuid.UUID
    name: str
    wecom_tag_id: str = Field(description="The WeCom tag id it mirrored.")


class CorpTagSyncReport(BaseModel):
    """What a sync changed locally (all zero when WeCom did not change since the last one)."""

    groups_created: int
    groups_linked: int = Field(description="Local groups matched by name and linked to their WeCom group.")
    groups_renamed: int
    groups_reordered: int
    groups_unlinked: int = Field(description="Local groups whose WeCom group is gone (kept, unlinked).")
    tags_created: int
    tags_linked: int = Field(description="Local tags matched by name within their group and linked.")
    tags_renamed: int
    tags_reordered: int
    tags_moved: int = Field(description="Linked tags moved into the local group mirroring their WeCom group.")
    tags_unlinked: int
    groups_pushed: int = Field(description="push_local: local groups created in WeCom and linked.")
    tags_pushed: int = Field(description="push_local: local tags created in WeCom and linked.")
    unlinked: list[UnlinkedTag]
    issues: list[CorpTagSyncIssue]
