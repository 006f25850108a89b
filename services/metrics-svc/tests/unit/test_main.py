"""metrics-svc's wiring: its port setting and the topics its worker owns."""

from __future__ import annotations

from metrics_svc.config import MetricsSettings
from metrics_svc.main import SPEC
from metrics_svc.stream import TOPICS


def test_port_defaults_and_env_override(monkeypatch):
    assert MetricsSettings().port == 8004
    monkeypatch.setenv("SCRM_METRICS_PORT", "18000")
    assert MetricsSettings().port == 18000
    assert MetricsSettings().effective_worker_metrics_port == 18100


def test_worker_owns_its_topics_and_schema():
    assert set(TOPICS) == {"message-sent", "order-placed", "order-refunded"}
    assert SPEC.schema == "metrics"
    assert sorted(p.name for p in SPEC.migrations.glob("*.sql"))[0] == "0001_init.sql"
