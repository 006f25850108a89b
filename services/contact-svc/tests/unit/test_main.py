"""contact-svc's wiring: its port setting and the topics its worker owns."""

from __future__ import annotations

from contact_svc.config import ContactSettings
from contact_svc.main import SPEC
from contact_svc.stream import TOPICS


def test_port_defaults_and_env_override(monkeypatch):
    assert ContactSettings().port == 8001
    monkeypatch.setenv("SCRM_CONTACT_PORT", "18000")
    assert ContactSettings().port == 18000
    assert ContactSettings().effective_worker_metrics_port == 18100


def test_worker_owns_its_topics_and_schema():
    assert set(TOPICS) == {
        "friend-added",
        "friend-deleted",
        "contact-updated",
        "transfer-failed",
        "order-placed",
    }
    assert SPEC.schema == "contact"
    assert sorted(p.name for p in SPEC.migrations.glob("*.sql"))[0] == "0001_init.sql"
