"""What the stand-in knows: corps, their staff and customers, tokens issued, and the faults and
call counts tests arrange and read."""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from contact_svc.wecom.standin.errcodes import EXPIRED_TOKEN, INVALID_TOKEN, MISSING_TOKEN

TOKEN_TTL = 7200  # WeCom's access_token lives 7200 s
FOLLOW_PAGE = 500  # externalcontact/get pages follow_user beyond 500 followers


@dataclass
class Follow:
    """One staff member's relation to a customer (WeCom's ``follow_user`` / ``follow_info``)."""

    userid: str
    createtime: int
    state: str = ""
    remark: str = ""
    description: str = ""
    add_way: int = 1
    tag_ids: list[str] = field(default_factory=list)

    def as_follow_user(self) -> dict[str, Any]:
        out = self._common()
        out["tags"] = [{"group_name": "", "tag_name": "", "type": 1, "tag_id": t} for t in self.tag_ids]
        return out

    def as_follow_info(self) -> dict[str, Any]:
        out = self._common()
        out["tag_id"] = list(self.tag_ids)
        return out

    def _common(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "userid": self.userid,
            "remark": self.remark,
            "description": self.description,
            "createtime": self.createtime,
            "remark_corp_name": "",
            "remark_mobiles": [],
            "add_way": self.add_way,
            "oper_userid": self.userid,
        }
        # WeCom sends state only when the friend came through a channel QR code.
        if self.state:
            out["state"] = self.state
        return out


@dataclass
class Friend:
    """A customer (external contact) of the corp and the staff members it is friends with."""

    external_userid: str
    name: str = ""
    avatar: str = ""
    gender: int = 0
    unionid: str | None = None
    type: int = 1
    follows: dict[str, Follow] = field(default_factory=dict)

    def as_external_contact(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "external_userid": self.external_userid,
            "name": self.name,
            "type": self.type,
            "avatar": self.avatar,
            "gender": self.gender,
        }
        # unionid is present only when the corp has bound a WeChat developer account.
        if self.unionid:
            out["unionid"] = self.unionid
        return out


@dataclass
class Corp:
    """A WeCom corp: its app secret, staff userids and customers."""

    corp_id: str
    secret: str
    staff: list[str] = field(default_factory=list)
    friends: dict[str, Friend] = field(default_factory=dict)

    def add_staff(self, *userids: str) -> None:
        for userid in userids:
            if userid not in self.staff:
                self.staff.append(userid)

    def add_friend(
        self,
        external_userid: str,
        staff: str,
        *,
        createtime: int | None = None,
        state: str = "",
        name: str | None = None,
        avatar: str | None = None,
        gender: int | None = None,
        unionid: str | None = None,
        remark: str = "",
        add_way: int = 1,
    ) -> Friend:
        """Make ``external_userid`` a friend of ``staff`` (creating either when new)."""
        self.add_staff(staff)
        friend = self.friends.setdefault(external_userid, Friend(external_userid))
        if name is not None:
            friend.name = name
        if avatar is not None:
            friend.avatar = avatar
        if gender is not None:
            friend.gender = gender
        if unionid is not None:
            friend.unionid = unionid
        friend.follows[staff] = Follow(
            userid=staff,
            createtime=int(time.time()) if createtime is None else createtime,
            state=state,
            remark=remark,
            add_way=add_way,
        )
        return friend

    def remove_friend(self, external_userid: str, staff: str) -> None:
        """End the friendship; the customer stays known to the corp only while someone follows it."""
        friend = self.friends.get(external_userid)
        if friend is None:
            return
        friend.follows.pop(staff, None)
        if not friend.follows:
            del self.friends[external_userid]

    def friends_of(self, userid: str) -> Iterator[tuple[Friend, Follow]]:
        for friend in self.friends.values():
            follow = friend.follows.get(userid)
            if follow is not None:
                yield friend, follow


@dataclass
class _Fault:
    errcode: int | None
    http_status: int | None


class Directory:
    """Everything the stand-in knows, plus fault injection and call counting for tests."""

    def __init__(self, *, token_ttl: int = TOKEN_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.corps: dict[str, Corp] = {}
        self.token_ttl = token_ttl
        self.follow_page = FOLLOW_PAGE
        self.calls: Counter[str] = Counter()
        """Requests per API name (``"gettoken"``, ``"externalcontact/get"``, ...)."""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every request: API name and its parameters (query plus JSON body), in order."""
        self.contact_errcodes: dict[str, int] = {}
        """external_userid -> errcode that ``externalcontact/get`` of it answers, every time."""
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._faults: dict[str, deque[_Fault]] = {}

    def add_corp(self, corp_id: str, secret: str) -> Corp:
        corp = self.corps.setdefault(corp_id, Corp(corp_id, secret))
        corp.secret = secret
        return corp

    def fail_next(
        self, api: str, errcode: int | None = None, *, times: int = 1, http_status: int | None = None
    ) -> None:
        """Answer the next ``times`` calls of ``api`` with ``errcode`` (or an HTTP error status)."""
        if (errcode is None) == (http_status is None):
            raise ValueError("give either errcode or http_status")
        faults = self._faults.setdefault(api, deque())
        faults.extend(_Fault(errcode, http_status) for _ in range(times))

    def clear_faults(self) -> None:
        """Forget the errcodes queued by :meth:`fail_next`."""
        self._faults.clear()

    def expire_tokens(self) -> None:
        """Make every token issued so far answer 42001 (expired)."""
        self._tokens = {token: (corp_id, float("-inf")) for token, (corp_id, _) in self._tokens.items()}

    def issue_token(self, corp_id: str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = (corp_id, self._clock() + self.token_ttl)
        return token

    def corp_of_token(self, token: str | None) -> Corp | int:
        """The corp a token belongs to, or the errcode WeCom would answer."""
        if not token:
            return MISSING_TOKEN
        entry = self._tokens.get(token)
        if entry is None:
            return INVALID_TOKEN
        corp_id, expires_at = entry
        if self._clock() >= expires_at:
            return EXPIRED_TOKEN
        return self.corps[corp_id]

    def take_fault(self, api: str) -> _Fault | None:
        faults = self._faults.get(api)
        return faults.popleft() if faults else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Directory:
        """A directory from ``{"corps": [...]}`` (see :mod:`contact_svc.wecom.standin`)."""
        directory = cls()
        for c in data.get("corps", []):
            corp = directory.add_corp(c["corp_id"], c["secret"])
            corp.add_staff(*c.get("staff", []))
            for f in c.get("contacts", []):
                for follow in f.get("follows", []):
                    corp.add_friend(
                        f["external_userid"],
                        follow["userid"],
                        createtime=follow.get("createtime"),
                        state=follow.get("state", ""),
                        remark=follow.get("remark", ""),
                        add_way=follow.get("add_way", 1),
                        name=f.get("name"),
                        avatar=f.get("avatar"),
                        gender=f.get("gender"),
                        unionid=f.get("unionid"),
                    )
        return directory
