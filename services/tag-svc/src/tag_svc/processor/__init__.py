"""Live segment membership: the stream processor, the schedule of time-driven changes, backfills.

- :mod:`.handler`: the batch handler of its own consume loop (topics :data:`TOPICS`, group
  ``tag-svc-segments``): events -> profiles and facts -> re-evaluation of the touched contacts ->
  transitions -> ``segment-changed`` through the outbox, one transaction per batch;
- :mod:`.schedule`: re-evaluates contacts whose next possible change (``next_change``) has come;
- :mod:`.backfill`: computes a new or edited segment over the existing profiles, in chunks;
- :mod:`.identity`: maps orders to contacts (pending orders applied when their link arrives);
- :mod:`.model` (pure): what a rule reads, assessing a contact, transitions;
- :mod:`.store`: all their SQL.

The worker runs :data:`BACKGROUND` beside its own consume loop; the API serves
:mod:`tag_svc.api.segments`.
"""

from tag_svc.processor.backfill import SegmentBackfiller, run_segment_backfills, segment_backfill_task
from tag_svc.processor.handler import (
    CONSUMER,
    GROUP_ID,
    TOPICS,
    build_segment_handler,
    run_segment_processor,
    segment_processor_task,
)
from tag_svc.processor.schedule import SegmentScheduler, run_segment_schedule, segment_schedule_task

BACKGROUND = (run_segment_processor, run_segment_schedule, run_segment_backfills)
"""The worker background tasks of live segments: the processor's consume loop, the schedule,
the backfill runner."""

__all__ = [
    "BACKGROUND",
    "CONSUMER",
    "GROUP_ID",
    "TOPICS",
    "SegmentBackfiller",
    "SegmentScheduler",
    "build_segment_handler",
    "run_segment_backfills",
    "run_segment_processor",
    "run_segment_schedule",
    "segment_backfill_task",
    "segment_processor_task",
    "segment_schedule_task",
]
