"""tag-svc's HTTP routes, one module per resource."""

from scrm_shared.service.tally import ingest_router
from tag_svc.api import contacts, jobs, tags, wecom

ROUTERS = (
    tags.groups_router,
    tags.tags_router,
    contacts.router,
    jobs.router,
    wecom.router,
    ingest_router,
)
