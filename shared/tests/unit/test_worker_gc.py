"""Workers collect garbage less often, and put the collector back as it was when they stop."""

from __future__ import annotations

import gc

from scrm_shared.service.worker import WORKER_GC_THRESHOLDS, worker_gc


def test_worker_gc_raises_the_thresholds_and_freezes_startup_objects_until_exit():
    before = gc.get_threshold()
    with worker_gc():
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
