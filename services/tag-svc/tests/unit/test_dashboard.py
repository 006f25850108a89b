"""The Grafana dashboard's tag-svc panels read metrics tag-svc really exports (a renamed metric
would leave an empty panel nobody notices until an incident)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import tag_svc.main  # noqa: F401 - registers every metric of the API and the worker
from tag_svc.processor import backfill, evaluate, fact_cache, schedule  # noqa: F401

DASHBOARD = Path(__file__).resolve().parents[4] / "deploy" / "grafana" / "dashboards" / "scrm-overview.json"
OURS = re.compile(r"\bscrm_(?:segment|tag)_[a-z_]+")


def exported() -> set[str]:
    return {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }


def test_every_tag_svc_metric_on_the_dashboard_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in OURS.findall(expr)}
    assert {"scrm_segment_apply_delay_seconds_bucket", "scrm_segment_transitions_total"} <= used
    # Histogram and labelled series appear once observed: compare against names and suffixes.
    names = exported()
    missing = {
        n for n in used if n not in names and re.sub(r"_(total|bucket|sum|count)$", "", n) not in names
    }
    assert not missing
