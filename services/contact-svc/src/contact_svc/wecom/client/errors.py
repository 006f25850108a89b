"""WeCom's errcodes and the errors the client raises (programs decide on errcode, never on errmsg)."""

from __future__ import annotations

SYSTEM_BUSY = -1
FREQUENCY_LIMIT = 45009  # 接口调用超过限制
CONCURRENCY_LIMIT = 45033  # 接口并发调用超过限制
RETRYABLE_ERRCODES: frozenset[int] = frozenset({SYSTEM_BUSY, FREQUENCY_LIMIT, CONCURRENCY_LIMIT})
"""Transient: the same request may succeed a little later."""

INVALID_TOKEN = 40014  # 不合法的access_token
EXPIRED_TOKEN = 42001  # access_token已过期
TOKEN_INVALID_ERRCODES: frozenset[int] = frozenset({INVALID_TOKEN, EXPIRED_TOKEN})
"""The access_token is no good any more: fetch a new one and repeat the call once."""

NOT_EXTERNAL_CONTACT = 84061  # 不存在外部联系人的关系
INVALID_EXTERNAL_USERID = 40096  # 不合法的外部联系人userid
NOT_FOUND_ERRCODES: frozenset[int] = frozenset({NOT_EXTERNAL_CONTACT, INVALID_EXTERNAL_USERID})
"""The external contact does not exist (any more) for this corp: asking again will not help."""

INVALID_SECRET = 40001
INVALID_CORPID = 40013
API_FORBIDDEN = 48002  # API接口无权限调用
NO_PRIVILEGE = 60011  # 指定的成员/部门/标签参数无权限
IP_NOT_ALLOWED = 60020  # 不安全的访问IP
CORP_ERRCODES: frozenset[int] = frozenset(
    {INVALID_SECRET, INVALID_CORPID, API_FORBIDDEN, NO_PRIVILEGE, IP_NOT_ALLOWED}
)
"""The corp's credentials or permissions are wrong: every call of this corp will fail alike."""

INVALID_USERID = 60111  # UserID不存在


class WeComError(Exception):
    """WeCom answered with a non-zero ``errcode`` (or could not be reached: see subclasses).

    ``str()`` carries the API and errcode only: WeCom's ``errmsg`` may echo request parameters,
    so it stays in :attr:`errmsg` for whoever knows it is safe to show.
    """

    def __init__(self, errcode: int, errmsg: str = "", *, api: str = "") -> None:
        super().__init__(f"WeCom {api or 'API'} errcode {errcode}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api

    @property
    def retryable(self) -> bool:
        """A transient error (rate limit, busy, unreachable) that outlived the client's retries."""
        return self.errcode in RETRYABLE_ERRCODES

    @property
    def not_found(self) -> bool:
        """The external contact does not exist for this corp."""
        return self.errcode in NOT_FOUND_ERRCODES

    @property
    def corp_level(self) -> bool:
        """The corp's credentials or permissions are at fault: other calls of the corp fail too."""
        return self.errcode in CORP_ERRCODES


class WeComTokenError(WeComError):
    """``gettoken`` failed: the corp's credentials were refused (wrong corp id or secret, no
    permission), or WeCom stayed busy through the retries (then :attr:`retryable`)."""

    @property
    def corp_level(self) -> bool:
        return not self.retryable


class WeComTransportError(WeComError):
    """WeCom could not be reached or answered garbage, after the retries (errcode -1: busy)."""

    def __init__(self, reason: str, *, api: str = "") -> None:
        super().__init__(SYSTEM_BUSY, reason, api=api)
        self.reason = reason
