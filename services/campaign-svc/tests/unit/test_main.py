"""campaign-svc's wiring: its port setting and the topics its worker owns."""

from __future__ import annotations

from campaign_svc.config import CampaignSettings
from campaign_svc.main import SPEC
from campaign_svc.stream import TOPICS


def test_port_defaults_and_env_override(monkeypatch):
    assert CampaignSettings().port == 8003
    monkeypatch.setenv("SCRM_CAMPAIGN_PORT", "18000")
    assert CampaignSettings().port == 18000
    assert CampaignSettings().effective_worker_metrics_port == 18100


def test_worker_owns_its_topics_and_schema():
    assert set(TOPICS) == {"friend-added"}
    assert SPEC.schema == "campaign"
    assert sorted(p.name for p in SPEC.migrations.glob("*.sql"))[0] == "0001_init.sql"
