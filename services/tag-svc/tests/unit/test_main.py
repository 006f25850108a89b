"""tag-svc's wiring: its port setting, the topics its worker owns, its routes and tasks."""

from __future__ import annotations

from scrm_shared.service import create_service_app
from tag_svc import processor
from tag_svc.config import TagSettings
from tag_svc.main import SPEC
from tag_svc.stream import BACKGROUND, TOPICS
from tag_svc.tags.jobs import run_tag_jobs
from tag_svc.tags.pushes import run_wecom_pushes


def test_port_defaults_and_env_override(monkeypatch):
    assert TagSettings().port == 8002
    monkeypatch.setenv("SCRM_TAG_PORT", "18000")
    assert TagSettings().port == 18000
    assert TagSettings().effective_worker_metrics_port == 18100


def test_tag_settings_come_from_scrm_tag_env(monkeypatch):
    monkeypatch.setenv("SCRM_TAG_WECOM_API_BASE", "http://127.0.0.1:18088/cgi-bin")
    monkeypatch.setenv("SCRM_TAG_JOB_CHUNK_SIZE", "500")
    settings = TagSettings()
    assert settings.tag_wecom_api_base == "http://127.0.0.1:18088/cgi-bin"
    assert settings.tag_job_chunk_size == 500


def test_worker_owns_its_topics_and_schema():
    assert set(TOPICS) == {
        "friend-added",
        "friend-deleted",
        "message-sent",
        "order-placed",
        "contact-updated",
        "segment-changed",
        "contact-erased",
    }
    assert BACKGROUND == (
        run_tag_jobs,
        run_wecom_pushes,
        processor.run_segment_processor,
        processor.run_segment_backfills,
    )
    assert SPEC.schema == "tag"
    names = sorted(p.name for p in SPEC.migrations.glob("*.sql"))
    assert names[0] == "0001_init.sql" and "0003_tags.sql" in names


def test_routes_of_the_tag_api_are_documented():
    paths = set(create_service_app(SPEC, TagSettings()).openapi()["paths"])
    assert {
        "/v1/tag-groups",
        "/v1/tag-groups/{group_id}",
        "/v1/tag-groups/{group_id}/tags",
        "/v1/tags",
        "/v1/tags/{tag_id}",
        "/v1/contacts/{external_userid}/tags",
        "/v1/contacts/{external_userid}/tags/{tag_id}",
        "/v1/tag-jobs",
        "/v1/tag-jobs/{job_id}",
        "/v1/wecom/credentials",
        "/v1/segments",
        "/v1/segments/preview",
        "/v1/segments/{segment_id}/members",
        "/v1/contacts/{external_userid}/segments",
        "/v1/ingest/stats",
    } <= paths
