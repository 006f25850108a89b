"""Request and response models of the segments and RFM API (what /docs shows front-ends)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tag_svc.segments import RFM_CLASSES, RfmClass, RfmThresholds

SegmentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
RuleJson = Annotated[
    dict[str, Any],
    Field(
        description="A segment rule (docs/segments.md), e.g. "
        '{"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]}.',
        examples=[{"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]}],
    ),
]


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class SegmentIn(_Request):
    name: SegmentName
    rule: RuleJson


class PreviewIn(_Request):
    rule: RuleJson


class Preview(BaseModel):
    count: int = Field(description="Contacts matching the rule today.")
    sample: list[str] = Field(description="Up to 20 of them (external_userid, in key order).")


class BackfillProgress(BaseModel):
    processed: int = Field(description="Profiles computed so far.")
    total: int = Field(description="Profiles to compute (as counted when the backfill began).")
    cause: Literal["backfill", "rule-edited"]


class Segment(BaseModel):
    segment_id: uuid.UUID
    name: str
    rule: dict[str, Any] = Field(description="The rule in canonical form.")
    status: Literal["backfilling", "live"] = Field(
        description="backfilling: being computed over existing contacts (see backfill); live: complete."
    )
    size: int = Field(description="Members now (while backfilling: found so far).")
    backfill: BackfillProgress | None = Field(default=None, description="Progress while backfilling.")
    created_at: datetime
    updated_at: datetime


class Segments(BaseModel):
    items: list[Segment]


class Member(BaseModel):
    external_userid: str
    entered_at: datetime


class Members(BaseModel):
    items: list[Member]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class ContactSegment(BaseModel):
    segment_id: uuid.UUID
    name: str
    entered_at: datetime


class ContactSegments(BaseModel):
    external_userid: str
    segments: list[ContactSegment]


class SizeOnDay(BaseModel):
    day: date = Field(description="A day in the tenant's timezone.")
    size: int = Field(description="Members at the end of the day (now, for today).")
    entered: int
    exited: int


class SizeHistory(BaseModel):
    segment_id: uuid.UUID
    items: list[SizeOnDay]


class RfmThresholdsIn(_Request):
    recent_within_days: int = Field(
        ge=0, le=3649, description="R is high at most this many days after an order."
    )
    frequent_min_orders: int = Field(
        ge=1, le=100_000, description="F is high from this many orders in the window."
    )
    monetary_min: Decimal = Field(
        ge=0, max_digits=14, decimal_places=2, description="M is high from this net amount."
    )
    window_days: int = Field(default=365, ge=1, le=3650, description="The window of F and M, today included.")

    def thresholds(self) -> RfmThresholds:
        return RfmThresholds(
            self.recent_within_days, self.frequent_min_orders, self.monetary_min, self.window_days
        )


class RfmThresholdsOut(BaseModel):
    recent_within_days: int
    frequent_min_orders: int
    monetary_min: Decimal
    window_days: int
    derived: bool = Field(description="Derived from the tenant's buyers (medians); false: set explicitly.")
    buyers: int | None = Field(default=None, description="Buyers the derivation looked at.")
    computed_at: datetime | None = None


class RfmClassCount(BaseModel):
    rfm_class: RfmClass
    contacts: int


class RfmClasses(BaseModel):
    day: date = Field(description="Today in the tenant's timezone (what the classes are as of).")
    thresholds: RfmThresholdsOut
    classes: list[RfmClassCount] = Field(description=f"All {len(RFM_CLASSES)} classes, in the classic order.")
