"""contact-svc's HTTP routes, one module per resource."""

from contact_svc.api import channels, contacts, staff, transfers, wecom
from scrm_shared.service.tally import ingest_router

ROUTERS = (
    wecom.callback_router,
    wecom.config_router,
    contacts.router,
    staff.router,
    channels.router,
    transfers.router,
    ingest_router,
)
