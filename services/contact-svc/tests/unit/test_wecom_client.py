"""The WeCom API client against the local stand-in, over real sockets on 127.0.0.1.

Tokens (caching, expiry margin, one fetch for concurrent callers, refresh on 40014/42001 once),
retries of 45009/45033/-1/HTTP 5xx with a bound, pagination, and typed errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from contact_svc.wecom.client import (
    ExternalContact,
    RetryPolicy,
    WeComClient,
    WeComError,
    WeComTokenError,
    WeComTransportError,
)
from contact_svc.wecom.standin import Corp, Directory, StandInServer

CORP_ID = "ww-acme"
SECRET = "acme-app-secret"
GET = "externalcontact/get"
BY_USER = "externalcontact/batch/get_by_user"
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.004)


class Clock:
    """A hand-driven monotonic clock for token lifetimes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(scope="module")
async def standin() -> AsyncIterator[StandInServer]:
    # One server for the module (uvicorn takes a tick to shut down); each test swaps in its own
    # directory below.
    async with StandInServer() as server:
        yield server


@pytest.fixture
def directory(standin: StandInServer) -> Directory:
    standin.directory = Directory()
    return standin.directory


@pytest.fixture
def corp(directory: Directory) -> Corp:
    corp = directory.add_corp(CORP_ID, SECRET)
    corp.add_friend(
        "wm-alice",
        "guide-1",
        name="Alice",
        avatar="https://wework.qpic.cn/a/0",
        gender=2,
        unionid="ozUnion-alice",
        createtime=1714528800,
        state="store-sh-012",
    )
    corp.add_friend("wm-alice", "guide-2", createtime=1714532400)
    return corp


@pytest_asyncio.fixture
async def wecom(standin: StandInServer, corp: Corp) -> AsyncIterator[WeComClient]:
    async with WeComClient(standin.base_url, retry=FAST) as client:
        yield client


# --- tokens ----------------------------------------------------------------------------------


async def test_get_external_contact_returns_profile_and_follows(wecom: WeComClient) -> None:
    detail = await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    contact = detail.external_contact
    assert (contact.external_userid, contact.name, contact.gender, contact.unionid) == (
        "wm-alice",
        "Alice",
        2,
        "ozUnion-alice",
    )
    assert contact.avatar == "https://wework.qpic.cn/a/0"
    by_staff = {f.userid: f for f in detail.follow_user}
    assert by_staff["guide-1"].state == "store-sh-012"
    assert by_staff["guide-1"].createtime == 1714528800
    assert by_staff["guide-2"].state is None  # WeCom omits state without a channel code


async def test_token_is_cached_per_corp(wecom: WeComClient, directory: Directory) -> None:
    corp = wecom.corp(CORP_ID, SECRET)
    await corp.get_external_contact("wm-alice")
    await corp.get_external_contact("wm-alice")
    await corp.list_external_userids("guide-1")

    assert directory.calls["gettoken"] == 1
    assert directory.calls[GET] == 2


async def test_concurrent_callers_share_one_token_fetch(wecom: WeComClient, directory: Directory) -> None:
    corp = wecom.corp(CORP_ID, SECRET)
    await asyncio.gather(*(corp.get_external_contact("wm-alice") for _ in range(8)))

    assert directory.calls["gettoken"] == 1
    assert directory.calls[GET] == 8


async def test_token_is_renewed_before_expiry_minus_margin(
    standin: StandInServer, directory: Directory, corp: Corp
) -> None:
    clock = Clock()
    async with WeComClient(standin.base_url, retry=FAST, token_margin=300, clock=clock) as client:
        corp = client.corp(CORP_ID, SECRET)
        await corp.get_external_contact("wm-alice")
        clock.now += 7200 - 300 - 1  # still inside the lifetime minus the margin
        await corp.get_external_contact("wm-alice")
        assert directory.calls["gettoken"] == 1
        clock.now += 2  # past it: fetched again before WeCom would call it expired
        await corp.get_external_contact("wm-alice")
        assert directory.calls["gettoken"] == 2


async def test_other_secret_gets_its_own_token(wecom: WeComClient, directory: Directory) -> None:
    other = directory.add_corp("ww-other", "other-secret")
    other.add_friend("wm-bob", "guide-9", name="Bob")

    await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")
    await wecom.corp("ww-other", "other-secret").get_external_contact("wm-bob")

    assert directory.calls["gettoken"] == 2


@pytest.mark.parametrize("errcode", [42001, 40014])
async def test_rejected_token_is_replaced_once(
    wecom: WeComClient, directory: Directory, errcode: int
) -> None:
    corp = wecom.corp(CORP_ID, SECRET)
    await corp.get_external_contact("wm-alice")
    if errcode == 42001:
        directory.expire_tokens()
    else:
        directory.fail_next(GET, errcode)

    detail = await corp.get_external_contact("wm-alice")

    assert detail.external_contact.name == "Alice"
    assert directory.calls["gettoken"] == 2
    assert directory.calls[GET] == 3  # ok, rejected, ok with the new token


async def test_token_refresh_is_tried_only_once(wecom: WeComClient, directory: Directory) -> None:
    directory.fail_next(GET, 42001, times=2)

    with pytest.raises(WeComError) as caught:
        await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert caught.value.errcode == 42001
    assert directory.calls["gettoken"] == 2
    assert directory.calls[GET] == 2


async def test_wrong_secret_is_a_typed_corp_level_error(wecom: WeComClient, directory: Directory) -> None:
    with pytest.raises(WeComTokenError) as caught:
        await wecom.corp(CORP_ID, "not-the-secret").get_external_contact("wm-alice")

    assert caught.value.errcode == 40001
    assert caught.value.corp_level
    assert directory.calls[GET] == 0


async def test_unknown_corp_is_a_typed_error(wecom: WeComClient) -> None:
    with pytest.raises(WeComTokenError) as caught:
        await wecom.corp("ww-nobody", SECRET).list_external_userids("guide-1")
    assert caught.value.errcode == 40013


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("errcode", [45009, 45033, -1])
async def test_transient_errcodes_are_retried_until_success(
    wecom: WeComClient, directory: Directory, errcode: int
) -> None:
    directory.fail_next(GET, errcode, times=2)

    detail = await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert detail.external_contact.name == "Alice"
    assert directory.calls[GET] == 3


async def test_gettoken_is_retried_too(wecom: WeComClient, directory: Directory) -> None:
    directory.fail_next("gettoken", -1, times=2)

    await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert directory.calls["gettoken"] == 3


async def test_retries_give_up_after_the_bound(
    standin: StandInServer, directory: Directory, corp: Corp
) -> None:
    directory.fail_next(GET, 45009, times=10)
    async with WeComClient(standin.base_url, retry=RetryPolicy(attempts=3, base_delay=0.001)) as client:
        with pytest.raises(WeComError) as caught:
            await client.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert caught.value.errcode == 45009
    assert caught.value.retryable
    assert directory.calls[GET] == 3


async def test_http_5xx_is_retried(wecom: WeComClient, directory: Directory) -> None:
    directory.fail_next(GET, http_status=502, times=2)

    detail = await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert detail.external_contact.external_userid == "wm-alice"
    assert directory.calls[GET] == 3


async def test_http_4xx_is_not_retried(wecom: WeComClient, directory: Directory) -> None:
    directory.fail_next(GET, http_status=404)

    with pytest.raises(WeComTransportError):
        await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")
    assert directory.calls[GET] == 1


async def test_unreachable_server_gives_up_with_a_transport_error() -> None:
    server = StandInServer(Directory())
    await server.start()
    base_url = server.base_url
    await server.stop()  # nothing listens on the port any more

    async with WeComClient(base_url, retry=RetryPolicy(attempts=2, base_delay=0.001)) as client:
        with pytest.raises(WeComTransportError) as caught:
            await client.corp(CORP_ID, SECRET).get_external_contact("wm-alice")
    assert caught.value.retryable


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]:
        delays = [policy.delay(retry, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


# --- other errors ----------------------------------------------------------------------------


async def test_unknown_external_contact_is_not_found(wecom: WeComClient, directory: Directory) -> None:
    with pytest.raises(WeComError) as caught:
        await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-nobody")

    assert caught.value.errcode == 84061
    assert caught.value.not_found
    assert not caught.value.retryable
    assert directory.calls[GET] == 1  # not retried


async def test_error_text_carries_errcode_not_errmsg(wecom: WeComClient, directory: Directory) -> None:
    directory.fail_next(GET, 40058)
    with pytest.raises(WeComError) as caught:
        await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert str(caught.value) == "WeCom externalcontact/get errcode 40058"
    assert caught.value.errmsg == "invalid parameter"


async def test_unknown_staff_in_batch_is_a_typed_error(wecom: WeComClient) -> None:
    corp = wecom.corp(CORP_ID, SECRET)
    with pytest.raises(WeComError) as caught:
        await corp.contacts_by_user(["guide-unknown"])
    assert caught.value.errcode == 60111


async def test_batch_refuses_bad_userid_lists_before_calling(
    wecom: WeComClient, directory: Directory
) -> None:
    corp = wecom.corp(CORP_ID, SECRET)
    with pytest.raises(ValueError):
        await corp.contacts_by_user([])
    with pytest.raises(ValueError):
        await corp.contacts_by_user([f"g{i}" for i in range(101)])
    assert directory.calls[BY_USER] == 0


# --- pagination ------------------------------------------------------------------------------


async def test_batch_get_by_user_follows_cursors(
    wecom: WeComClient, directory: Directory, corp: Corp
) -> None:
    for i in range(7):
        corp.add_friend(f"wm-{i}", "guide-3", createtime=1714500000 + i, state=f"s{i}")

    items = [item async for item in wecom.corp(CORP_ID, SECRET).iter_contacts_by_user(["guide-3"], limit=3)]

    assert sorted(i.external_contact.external_userid for i in items) == [f"wm-{i}" for i in range(7)]
    assert {i.follow_info.userid for i in items} == {"guide-3"}
    assert {i.follow_info.state for i in items} == {f"s{i}" for i in range(7)}
    pages = [params for api, params in directory.requests if api == BY_USER]
    assert [p["limit"] for p in pages] == [3, 3, 3]
    assert pages[0]["cursor"] == ""
    assert pages[1]["cursor"] and pages[2]["cursor"] and pages[1]["cursor"] != pages[2]["cursor"]


async def test_batch_get_by_user_single_page(wecom: WeComClient) -> None:
    page = await wecom.corp(CORP_ID, SECRET).contacts_by_user(["guide-1", "guide-2"])

    assert page.next_cursor == ""
    assert sorted(i.follow_info.userid for i in page.external_contact_list) == ["guide-1", "guide-2"]
    assert page.external_contact_list[0].external_contact.name == "Alice"


async def test_pagination_survives_a_throttled_page(
    wecom: WeComClient, directory: Directory, corp: Corp
) -> None:
    for i in range(5):
        corp.add_friend(f"wm-{i}", "guide-3", createtime=1714500000 + i)
    corp_client = wecom.corp(CORP_ID, SECRET)
    seen = []
    async for item in corp_client.iter_contacts_by_user(["guide-3"], limit=2):
        seen.append(item.external_contact.external_userid)
        if len(seen) == 2:
            directory.fail_next(BY_USER, 45033)  # the second page is throttled once

    assert sorted(seen) == [f"wm-{i}" for i in range(5)]


async def test_follow_users_beyond_a_page_are_joined(
    wecom: WeComClient, directory: Directory, corp: Corp
) -> None:
    directory.follow_page = 2
    for i in range(3, 6):
        corp.add_friend("wm-alice", f"guide-{i}", createtime=1714500000 + i)

    detail = await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    assert sorted(f.userid for f in detail.follow_user) == [f"guide-{i}" for i in range(1, 6)]
    assert directory.calls[GET] == 3


async def test_list_external_userids(wecom: WeComClient) -> None:
    assert await wecom.corp(CORP_ID, SECRET).list_external_userids("guide-2") == ["wm-alice"]


# --- personal data ---------------------------------------------------------------------------


async def test_request_logs_carry_no_query_strings(
    wecom: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await wecom.corp(CORP_ID, SECRET).get_external_contact("wm-alice")

    # Our process's lines only: the stand-in's server-side access log plays WeCom's part here.
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("uvicorn"))
    assert "HTTP Request" in text  # httpx did log the requests ...
    assert SECRET not in text and "wm-alice" not in text and "access_token" not in text  # ... bare


def test_profile_repr_hides_personal_fields() -> None:
    contact = ExternalContact(
        external_userid="wm-x", name="Alice", avatar="https://a/0", gender=2, unionid="oz"
    )
    assert "Alice" not in repr(contact) and "wm-x" not in repr(contact) and "oz" not in repr(contact)
