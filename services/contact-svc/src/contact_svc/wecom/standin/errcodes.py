"""The errcodes the stand-in answers (WeCom's global return codes) and their errmsg.

The stand-in keeps its own table rather than the client's: it plays WeCom, and a code the client
got wrong must not be agreed with here.
"""

from __future__ import annotations

OK = 0
INVALID_SECRET = 40001
INVALID_CORPID = 40013
INVALID_TOKEN = 40014
INVALID_PARAMETER = 40058
MISSING_TOKEN = 41001
EXPIRED_TOKEN = 42001
INVALID_USERID = 60111
NOT_EXTERNAL_CONTACT = 84061
ERRMSG = {
    OK: "ok",
    -1: "system busy",
    INVALID_SECRET: "invalid credential",
    INVALID_CORPID: "invalid corpid",
    INVALID_TOKEN: "invalid access_token",
    INVALID_PARAMETER: "invalid parameter",
    MISSING_TOKEN: "access_token missing",
    EXPIRED_TOKEN: "access_token expired",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    INVALID_USERID: "invalid userid",
    NOT_EXTERNAL_CONTACT: "not external contact",
}
