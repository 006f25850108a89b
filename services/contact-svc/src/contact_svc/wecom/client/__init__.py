"""Client of WeCom's server API (企业微信服务端API): the external-contact calls contact-svc needs.

One :class:`WeComClient` (one ``httpx.AsyncClient``) serves every tenant; :meth:`WeComClient.corp`
binds a corp's credentials::

    async with WeComClient(settings.wecom_api_base) as wecom:
        corp = wecom.corp(corp_id, secret)
        detail = await corp.get_external_contact(external_userid)
        async for item in corp.iter_contacts_by_user(["guide-1"]):
            ...

What the client takes care of:

- ``gettoken``: one access_token per corp and secret, cached until ``expires_in`` minus a safety
  margin, fetched once by concurrent callers; an ``errcode`` 40014 (invalid) or 42001 (expired)
  drops it and the call is repeated once with a fresh token.
- ``errcode`` 45009 (frequency limit), 45033 (concurrency limit), -1 (system busy), transport
  errors and HTTP 5xx are retried with exponential backoff and jitter, up to
  :attr:`RetryPolicy.attempts` tries; then, and for every other non-zero ``errcode``, a typed
  :class:`WeComError` is raised.

Personal data: requests carry secrets, tokens and customer ids in their query strings, and
responses carry names and avatars. Nothing here logs them: errors carry the ``errcode`` and API
name only (WeCom's ``errmsg`` stays on the exception, out of its text), the response models hide
personal fields from ``repr``, and httpx's own request log line loses its query string.
"""

from contact_svc.wecom.client.api import CorpClient, WeComClient
from contact_svc.wecom.client.errors import (
    NOT_FOUND_ERRCODES,
    RETRYABLE_ERRCODES,
    TOKEN_INVALID_ERRCODES,
    WeComError,
    WeComTokenError,
    WeComTransportError,
)
from contact_svc.wecom.client.models import (
    ContactByUser,
    ContactDetail,
    ContactsPage,
    ExternalContact,
    FollowInfo,
)
from contact_svc.wecom.client.retry import RetryPolicy

__all__ = [
    "NOT_FOUND_ERRCODES",
    "RETRYABLE_ERRCODES",
    "TOKEN_INVALID_ERRCODES",
    "ContactByUser",
    "ContactDetail",
    "ContactsPage",
    "CorpClient",
    "ExternalContact",
    "FollowInfo",
    "RetryPolicy",
    "WeComClient",
    "WeComError",
    "WeComTokenError",
    "WeComTransportError",
]
