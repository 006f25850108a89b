"""The mark_tag adapters: the HTTP one against a mocked WeCom (request shape, tokens, errcodes)
and the recording stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tag_svc.config import TagSettings
from tag_svc.tags.wecom import (
    NO_CREDENTIALS,
    CredentialTokenProvider,
    HttpAdapter,
    MarkTagCall,
    RecordingAdapter,
    WeComTagError,
    open_adapter,
)

BASE = "https://wecom.test/cgi-bin"
SECRET = "s3cret-value"


class FakePool:
    """Answers the credentials lookup like the store's pool would."""

    def __init__(self, creds: dict[str, tuple[str, str]]) -> None:
        self.creds = creds

    async def fetchrow(self, _sql: str, tenant_id: str) -> dict[str, Any] | None:
        if tenant_id not in self.creds:
            return None
        corp_id, secret = self.creds[tenant_id]
        return {"tenant_id": tenant_id, "corp_id": corp_id, "secret": secret, "updated_at": datetime.now(UTC)}


class FakeWeCom:
    """gettoken and mark_tag; ``mark_errcodes`` answer the next mark_tag calls."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.mark_errcodes: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/gettoken"):
            assert request.method == "GET"
            if request.url.params["corpsecret"] != SECRET:
                return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid secret"})
            self.tokens_issued += 1
            return httpx.Response(
                200, json={"errcode": 0, "access_token": f"tok-{self.tokens_issued}", "expires_in": 7200}
            )
        assert request.url.path.endswith("/externalcontact/mark_tag")
        errcode = self.mark_errcodes.pop(0) if self.mark_errcodes else 0
        return httpx.Response(200, json={"errcode": errcode, "errmsg": "ok" if errcode == 0 else "no"})

    @property
    def marks(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/mark_tag")]


def adapter(wecom: FakeWeCom, creds: dict[str, tuple[str, str]] | None = None) -> HttpAdapter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(wecom))
    pool = FakePool({"acme": ("ww-acme", SECRET)} if creds is None else creds)
    return HttpAdapter(http, BASE, CredentialTokenProvider(pool, http, BASE))  # type: ignore[arg-type]


async def test_mark_tag_sends_wecoms_fields_with_a_cached_token():
    wecom = FakeWeCom()
    http_adapter = adapter(wecom)
    await http_adapter.mark_tag("acme", "zhang.wei", "wm-1", add_tag=["etA"], remove_tag=["etB"])
    await http_adapter.mark_tag("acme", "zhang.wei", "wm-2", add_tag=["etA"])

    first = wecom.marks[0]
    assert first.method == "POST"
    assert str(first.url.copy_with(query=None)) == f"{BASE}/externalcontact/mark_tag"
    assert first.url.params["access_token"] == "tok-1"
    assert json.loads(first.content) == {
        "userid": "zhang.wei",
        "external_userid": "wm-1",
        "add_tag": ["etA"],
        "remove_tag": ["etB"],
    }
    assert json.loads(wecom.marks[1].content)["remove_tag"] == []
    gettoken = wecom.requests[0]
    assert (gettoken.url.params["corpid"], gettoken.url.params["corpsecret"]) == ("ww-acme", SECRET)
    assert wecom.tokens_issued == 1


async def test_an_expired_token_is_replaced_once():
    wecom = FakeWeCom()
    wecom.mark_errcodes = [42001]
    await adapter(wecom).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert [r.url.params["access_token"] for r in wecom.marks] == ["tok-1", "tok-2"]

    wecom.mark_errcodes = [40014, 40014]
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.errcode == 40014 and not caught.value.retryable


@pytest.mark.parametrize(
    ("errcode", "retryable"), [(45009, True), (-1, True), (84061, False), (60111, False)]
)
async def test_errcodes_say_whether_to_retry(errcode: int, retryable: bool):
    wecom = FakeWeCom()
    wecom.mark_errcodes = [errcode]
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert (caught.value.errcode, caught.value.retryable) == (errcode, retryable)
    assert "no" not in str(caught.value)  # errmsg stays out of the text


async def test_missing_or_refused_credentials():
    wecom = FakeWeCom()
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom, creds={}).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.errcode == NO_CREDENTIALS and caught.value.retryable
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom, creds={"acme": ("ww-acme", "wrong")}).mark_tag(
            "acme", "s1", "wm-1", add_tag=["etA"]
        )
    assert caught.value.errcode == 40001 and caught.value.api == "gettoken"
    assert wecom.marks == []


async def test_transport_failures_and_server_errors_are_retryable():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(down))
    tokens = CredentialTokenProvider(FakePool({"acme": ("ww", SECRET)}), http, BASE)  # type: ignore[arg-type]
    with pytest.raises(WeComTagError) as caught:
        await HttpAdapter(http, BASE, tokens).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.retryable

    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway")))
    tokens = CredentialTokenProvider(FakePool({"acme": ("ww", SECRET)}), http, BASE)  # type: ignore[arg-type]
    with pytest.raises(WeComTagError) as caught:
        await HttpAdapter(http, BASE, tokens).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.retryable


async def test_recording_adapter_records_and_fails_on_request():
    wecom = RecordingAdapter()
    wecom.fail_next(45009)
    with pytest.raises(WeComTagError):
        await wecom.mark_tag("acme", "s1", "wm-1", ["etA"])
    await wecom.mark_tag("acme", "s1", "wm-1", ["etA"], ["etB"])
    assert wecom.calls == [MarkTagCall("acme", "s1", "wm-1", ("etA",), ("etB",))]
    bounded = RecordingAdapter(keep=2)
    for euid in ("wm-1", "wm-2", "wm-3"):
        await bounded.mark_tag("acme", "s1", euid, ["etA"])
    assert [c.external_userid for c in bounded.calls] == ["wm-2", "wm-3"]


async def test_settings_choose_the_adapter():
    assert TagSettings().effective_wecom_adapter == "recording"
    assert TagSettings(env="prod", jwt_secret="x" * 32).effective_wecom_adapter == "http"
    async with open_adapter(TagSettings(), FakePool({})) as chosen:  # type: ignore[arg-type]
        assert isinstance(chosen, RecordingAdapter)
    settings = TagSettings(tag_wecom_adapter="http")
    async with open_adapter(settings, FakePool({})) as chosen:  # type: ignore[arg-type]
        assert isinstance(chosen, HttpAdapter)
