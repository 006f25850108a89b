"""A local stand-in of WeCom's server API (WeCom itself is unreachable from here).

It speaks the same HTTP as ``https://qyapi.weixin.qq.com/cgi-bin`` for the calls contact-svc
makes (``gettoken``, ``externalcontact/get``, ``externalcontact/batch/get_by_user``,
``externalcontact/list``): same parameters, same JSON fields, WeCom's errcodes in HTTP 200
answers. The data comes from an in-memory :class:`Directory` of corps, staff and customers;
tests can make the next calls of an API fail with an errcode (:meth:`Directory.fail_next`) or
one contact fail always (:attr:`Directory.contact_errcodes`), expire every token (:meth:`Directory.expire_tokens`) and count calls (:attr:`Directory.calls`).

In tests, over a real socket in the test's event loop::

    directory = Directory()
    corp = directory.add_corp("ww-acme", "s3cret")
    corp.add_friend("wm-1", "guide-1", name="...", createtime=1714528800, state="store-sh-012")
    async with StandInServer(directory) as wecom:
        settings = ContactSettings(wecom_api_base=wecom.base_url, ...)

As a process (e.g. for ``make run``), with a JSON file of corps::

    python -m contact_svc.wecom.standin --port 18088 --directory corps.json

``corps.json``: ``{"corps": [{"corp_id", "secret", "staff": [...], "contacts": [{"external_userid",
"name", "avatar", "gender", "unionid", "follows": [{"userid", "createtime", "state", ...}]}]}]}``.
Point ``SCRM_WECOM_API_BASE`` at ``http://127.0.0.1:18088/cgi-bin``.
"""

from contact_svc.wecom.standin.app import build_app
from contact_svc.wecom.standin.directory import Corp, Directory, Follow, Friend
from contact_svc.wecom.standin.server import StandInServer

__all__ = ["Corp", "Directory", "Follow", "Friend", "StandInServer", "build_app"]
