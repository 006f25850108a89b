"""The WeCom adapters: the HTTP one against a mocked WeCom (request shape, tokens, errcodes) and
the recording stand-in, for mark_tag and the catalogue's edit_corp_tag / del_corp_tag."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from scrm_shared.secrets import SealedColumn, SecretBox, new_key
from tag_svc.config import TagSettings
from tag_svc.tags.wecom import (
    NO_CREDENTIALS,
    CredentialTokenProvider,
    DelCorpTagCall,
    EditCorpTagCall,
    HttpAdapter,
    MarkTagCall,
    RecordingAdapter,
    WeComTagError,
    open_adapter,
)

BASE = "https://wecom.test/cgi-bin"
SECRET = "s3cret-value"
BOX = TagSettings().secret_box


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
    """gettoken, mark_tag, edit_corp_tag and del_corp_tag; ``mark_errcodes`` answer the next
    calls other than gettoken."""

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
        assert request.url.path.rsplit("/", 1)[-1] in ("mark_tag", "edit_corp_tag", "del_corp_tag")
        errcode = self.mark_errcodes.pop(0) if self.mark_errcodes else 0
        return httpx.Response(200, json={"errcode": errcode, "errmsg": "ok" if errcode == 0 else "no"})

    @property
    def marks(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/mark_tag")]

    @property
    def corp_edits(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (r.url.path.rsplit("/", 1)[-1], json.loads(r.content))
            for r in self.requests
            if r.url.path.endswith(("/edit_corp_tag", "/del_corp_tag"))
        ]


def adapter(wecom: FakeWeCom, creds: dict[str, tuple[str, str]] | None = None) -> HttpAdapter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(wecom))
    pool = FakePool({"acme": ("ww-acme", SECRET)} if creds is None else creds)
    return HttpAdapter(http, BASE, CredentialTokenProvider(pool, BOX, http, BASE))  # type: ignore[arg-type]


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


async def test_a_secret_no_key_opens_counts_as_no_credentials():
    wecom = FakeWeCom()
    lost = SealedColumn("wecom_credentials", "secret").seal(
        SecretBox.from_setting(f"k0:{new_key()}"), "acme", SECRET
    )
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom, creds={"acme": ("ww-acme", lost)}).mark_tag(
            "acme", "s1", "wm-1", add_tag=["etA"]
        )
    assert caught.value.errcode == NO_CREDENTIALS and caught.value.retryable
    assert wecom.requests == []  # WeCom never saw the sealed value


async def test_transport_failures_and_server_errors_are_retryable():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(down))
    tokens = CredentialTokenProvider(FakePool({"acme": ("ww", SECRET)}), BOX, http, BASE)  # type: ignore[arg-type]
    with pytest.raises(WeComTagError) as caught:
        await HttpAdapter(http, BASE, tokens).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.retryable

    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway")))
    tokens = CredentialTokenProvider(FakePool({"acme": ("ww", SECRET)}), BOX, http, BASE)  # type: ignore[arg-type]
    with pytest.raises(WeComTagError) as caught:
        await HttpAdapter(http, BASE, tokens).mark_tag("acme", "s1", "wm-1", add_tag=["etA"])
    assert caught.value.retryable


async def test_corp_tag_edits_send_wecoms_fields():
    wecom = FakeWeCom()
    http_adapter = adapter(wecom)
    await http_adapter.edit_corp_tag("acme", "etTAG", name="SVIP")
    await http_adapter.edit_corp_tag("acme", "etGROUP", name="会员", order=3)
    await http_adapter.del_corp_tag("acme", tag_ids=["etA", "etB"])
    await http_adapter.del_corp_tag("acme", group_ids=["etG"])
    assert wecom.corp_edits == [
        ("edit_corp_tag", {"id": "etTAG", "name": "SVIP"}),
        ("edit_corp_tag", {"id": "etGROUP", "name": "会员", "order": 3}),
        ("del_corp_tag", {"tag_id": ["etA", "etB"]}),
        ("del_corp_tag", {"group_id": ["etG"]}),
    ]
    edit = next(r for r in wecom.requests if r.url.path.endswith("/edit_corp_tag"))
    assert edit.method == "POST"
    assert str(edit.url.copy_with(query=None)) == f"{BASE}/externalcontact/edit_corp_tag"
    assert edit.url.params["access_token"] == "tok-1"
    assert wecom.tokens_issued == 1
    with pytest.raises(ValueError, match="tag id or a group id"):
        await http_adapter.del_corp_tag("acme")


@pytest.mark.parametrize(("errcode", "retryable"), [(45033, True), (301002, False), (40068, False)])
async def test_corp_tag_edit_errcodes_say_whether_to_retry(errcode: int, retryable: bool):
    wecom = FakeWeCom()
    wecom.mark_errcodes = [errcode, errcode]
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom).edit_corp_tag("acme", "etTAG", name="SVIP")
    assert (caught.value.errcode, caught.value.retryable, caught.value.api) == (
        errcode,
        retryable,
        "externalcontact/edit_corp_tag",
    )
    with pytest.raises(WeComTagError) as caught:
        await adapter(wecom).del_corp_tag("acme", tag_ids=["etTAG"])
    assert caught.value.api == "externalcontact/del_corp_tag"
    # An expired token is replaced and the call repeated once, as for mark_tag.
    wecom.mark_errcodes = [42001]
    await adapter(wecom).del_corp_tag("acme", tag_ids=["etTAG"])
    assert [r.url.params["access_token"] for r in wecom.requests if r.url.path.endswith("del_corp_tag")][
        -2:
    ] == [
        "tok-3",
        "tok-4",
    ]


async def test_recording_adapter_applies_corp_tag_edits_to_its_library():
    wecom = RecordingAdapter()
    group = wecom.library("acme").add_group("会员", ["VIP", "普通"])
    vip, plain = (t.id for t in group.tags)
    await wecom.edit_corp_tag("acme", vip, name="SVIP")
    await wecom.edit_corp_tag("acme", group.group_id, name="会员等级")
    [listed] = wecom.library("acme").groups()
    assert (listed.name, [t.name for t in listed.tags]) == ("会员等级", ["SVIP", "普通"])
    await wecom.del_corp_tag("acme", tag_ids=[plain])
    assert [t.name for t in wecom.library("acme").groups()[0].tags] == ["SVIP"]
    # The last tag takes its group along, as in WeCom.
    await wecom.del_corp_tag("acme", tag_ids=[vip])
    assert wecom.library("acme").groups() == []
    assert wecom.corp_calls == [
        EditCorpTagCall("acme", vip, "SVIP", None),
        EditCorpTagCall("acme", group.group_id, "会员等级", None),
        DelCorpTagCall("acme", (plain,), ()),
        DelCorpTagCall("acme", (vip,), ()),
    ]
    # Ids its library does not hold (the worker's stand-in has none) are recorded all the same;
    # injected failures come first.
    await wecom.edit_corp_tag("acme", "etNONE", name="X")
    wecom.fail_next(301002, retryable=False)
    with pytest.raises(WeComTagError) as caught:
        await wecom.del_corp_tag("acme", group_ids=["etNONE"])
    assert (caught.value.errcode, caught.value.retryable) == (301002, False)
    await wecom.del_corp_tag("acme", group_ids=["etNONE"])
    assert wecom.corp_calls[4:] == [
        EditCorpTagCall("acme", "etNONE", "X", None),
        DelCorpTagCall("acme", (), ("etNONE",)),
    ]


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
    assert (
        TagSettings(env="prod", jwt_secret="x" * 32, secrets_keys=f"k1:{new_key()}").effective_wecom_adapter
        == "http"
    )
    async with open_adapter(TagSettings(), FakePool({})) as chosen:  # type: ignore[arg-type]
        assert isinstance(chosen, RecordingAdapter)
    settings = TagSettings(tag_wecom_adapter="http")
    async with open_adapter(settings, FakePool({})) as chosen:  # type: ignore[arg-type]
        assert isinstance(chosen, HttpAdapter)
