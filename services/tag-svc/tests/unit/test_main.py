"""tag-svc's wiring: its port setting and the topics its worker owns."""

from __future__ import annotations

from tag_svc.config import TagSettings
from tag_svc.main import SPEC
from tag_svc.stream import TOPICS


def test_port_defaults_and_env_override(monkeypatch):
    assert TagSettings().port == 8002
    monkeypatch.setenv("SCRM_TAG_PORT", "18000")
    assert TagSettings().port == 18000
    assert TagSettings().effective_worker_metrics_port == 18100


def test_worker_owns_its_topics_and_schema():
    assert set(TOPICS) == {"friend-added", "message-sent", "order-placed"}
    assert SPEC.schema == "tag"
    assert sorted(p.name for p in SPEC.migrations.glob("*.sql"))[0] == "0001_init.sql"
