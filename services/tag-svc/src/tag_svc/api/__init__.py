"""tag-svc's HTTP routes, one module per resource."""

from scrm_shared.service.tally import ingest_router
from tag_svc.api import contacts, jobs, rfm, segment_settings, segments, tag_rules, tags, wecom

ROUTERS = (
    tags.groups_router,
    tags.tags_router,
    contacts.router,
    jobs.router,
    wecom.router,
    segments.router,
    segments.contacts_router,
    rfm.router,
    segment_settings.router,
    tag_rules.router,
    ingest_router,
)
