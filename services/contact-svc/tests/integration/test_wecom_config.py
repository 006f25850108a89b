"""The tenant's WeCom settings: validation, secrets never shown, roles, and tenant isolation."""

from __future__ import annotations

import uuid

import httpx
import pytest

from contact_svc.store import wecom as wecom_store

pytestmark = pytest.mark.integration

KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
TOKEN = "QDG6eK"
SECRET = "Xq9_Ld-3kVbN7sTzRw8YcHfGpJmA2eUoQiEnBvCxKlZ"
VALID = {
    "corp_id": "wx5823bf96d3bd56c7",
    "token": TOKEN,
    "encoding_aes_key": KEY,
    "agent_id": 1000002,
    "secret": SECRET,
}


def assert_no_secrets(response: httpx.Response) -> None:
    for secret in (KEY, TOKEN, SECRET):
        assert secret not in response.text


async def test_put_then_get_hides_the_secrets(client: httpx.AsyncClient, auth, tenant: str):
    put = await client.put("/v1/wecom/config", json=VALID, headers=auth(tenant, "admin"))
    assert put.status_code == 200, put.text
    assert_no_secrets(put)
    got = await client.get("/v1/wecom/config", headers=auth(tenant, "operator"))
    assert got.status_code == 200
    assert_no_secrets(got)
    body = got.json()
    assert body == put.json()
    assert {k: body[k] for k in ("tenant_id", "corp_id", "agent_id")} == {
        "tenant_id": tenant,
        "corp_id": "wx5823bf96d3bd56c7",
        "agent_id": 1000002,
    }
    assert body["has_token"] is True and body["has_encoding_aes_key"] is True and body["has_secret"] is True
    assert body["callback_path"] == f"/wecom/callback/{tenant}"
    assert not {"token", "encoding_aes_key", "secret"} & set(body)


async def test_optional_fields_keep_their_value_unless_sent(client: httpx.AsyncClient, auth, tenant: str):
    admin = auth(tenant, "admin")
    await client.put("/v1/wecom/config", json=VALID, headers=admin)
    # Token rotation without re-entering the secret (which the API never shows).
    rotated = {k: v for k, v in VALID.items() if k not in ("secret", "agent_id")} | {"token": "newToken42"}
    body = (await client.put("/v1/wecom/config", json=rotated, headers=admin)).json()
    assert body["has_secret"] is True and body["agent_id"] == 1000002
    # An explicit null clears.
    body = (
        await client.put(
            "/v1/wecom/config", json={**rotated, "secret": None, "agent_id": None}, headers=admin
        )
    ).json()
    assert body["has_secret"] is False and body["agent_id"] is None


async def test_config_without_optional_fields(client: httpx.AsyncClient, auth, tenant: str):
    minimal = {"corp_id": "ww1436e0e65a779aee", "token": "t0k", "encoding_aes_key": KEY}
    response = await client.put("/v1/wecom/config", json=minimal, headers=auth(tenant, "admin"))
    assert response.status_code == 200
    assert response.json()["has_secret"] is False and response.json()["agent_id"] is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"encoding_aes_key": KEY[:-1]}, "encoding_aes_key", "exactly 43 characters"),
        ({"encoding_aes_key": KEY + "x"}, "encoding_aes_key", "exactly 43 characters"),
        ({"encoding_aes_key": KEY[:-1] + "+"}, "encoding_aes_key", "A-Z, a-z and 0-9"),
        ({"encoding_aes_key": KEY[:-1] + "="}, "encoding_aes_key", "A-Z, a-z and 0-9"),
        ({"encoding_aes_key": None}, "encoding_aes_key", "string"),
        ({"token": ""}, "token", "1-32 letters or digits"),
        ({"token": "x" * 33}, "token", "1-32 letters or digits"),
        ({"token": "has space"}, "token", "1-32 letters or digits"),
        ({"corp_id": ""}, "corp_id", "CorpID"),
        ({"corp_id": "ww<script>"}, "corp_id", "CorpID"),
        ({"agent_id": True}, "agent_id", "positive integer"),
        ({"agent_id": "1000002"}, "agent_id", "positive integer"),
        ({"agent_id": 0}, "agent_id", "positive integer"),
        ({"secret": "two words"}, "secret", "printable ASCII"),
        ({"secret": ""}, "secret", "printable ASCII"),
        ({"encodingAesKey": KEY}, "encodingAesKey", "Extra inputs"),
    ],
)
async def test_validation_errors_are_precise_and_do_not_echo(
    client: httpx.AsyncClient, auth, tenant: str, change, field, message
):
    response = await client.put("/v1/wecom/config", json={**VALID, **change}, headers=auth(tenant, "admin"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [f"$.body.{field}"]
    assert message in errors[0]["msg"]
    assert_no_secrets(response)
    # Nothing was stored.
    assert (await client.get("/v1/wecom/config", headers=auth(tenant, "admin"))).status_code == 404


async def test_missing_required_fields_are_each_named(client: httpx.AsyncClient, auth, tenant: str):
    response = await client.put("/v1/wecom/config", json={"agent_id": 1}, headers=auth(tenant, "admin"))
    assert response.status_code == 422
    assert sorted(e["loc"] for e in response.json()["errors"]) == [
        "$.body.corp_id",
        "$.body.encoding_aes_key",
        "$.body.token",
    ]


async def test_roles(client: httpx.AsyncClient, auth, tenant: str):
    assert (await client.put("/v1/wecom/config", json=VALID)).status_code == 401
    assert (
        await client.put("/v1/wecom/config", json=VALID, headers=auth(tenant, "operator"))
    ).status_code == 403
    guide = auth(tenant, "guide", staff="zhang.wei")
    assert (await client.put("/v1/wecom/config", json=VALID, headers=guide)).status_code == 403
    assert (
        await client.put("/v1/wecom/config", json=VALID, headers=auth(tenant, "admin"))
    ).status_code == 200
    assert (await client.get("/v1/wecom/config", headers=guide)).status_code == 403
    assert (await client.get("/v1/wecom/config")).status_code == 401


async def test_tenants_never_see_each_others_config(client: httpx.AsyncClient, auth, tenant: str):
    other = f"t{uuid.uuid4().hex[:10]}"
    await client.put("/v1/wecom/config", json=VALID, headers=auth(tenant, "admin"))
    response = await client.get("/v1/wecom/config", headers=auth(other, "admin"))
    assert response.status_code == 404
    assert response.json()["type"] == "urn:scrm:problem:wecom-config-missing"
    assert "wx5823bf96d3bd56c7" not in response.text
    # The other tenant's PUT writes its own row, never this tenant's.
    theirs = {**VALID, "corp_id": "wwTheirCorp000000", "secret": None}
    assert (
        await client.put("/v1/wecom/config", json=theirs, headers=auth(other, "admin"))
    ).status_code == 200
    mine = (await client.get("/v1/wecom/config", headers=auth(tenant, "admin"))).json()
    assert mine["corp_id"] == "wx5823bf96d3bd56c7" and mine["has_secret"] is True


async def test_openapi_documents_the_routes(client: httpx.AsyncClient):
    spec = (await client.get("/openapi.json")).json()
    assert {"get", "put"} <= set(spec["paths"]["/v1/wecom/config"])
    assert {"get", "post"} <= set(spec["paths"]["/wecom/callback/{tenant_id}"])
    schema = spec["components"]["schemas"]["WeComConfigOut"]["properties"]
    assert not {"token", "encoding_aes_key", "secret"} & set(schema)


async def test_the_secrets_are_stored_sealed(client: httpx.AsyncClient, auth, tenant: str, contact_app):
    """Token, EncodingAESKey and app secret never reach PostgreSQL readable (scrm_shared.secrets);
    the API still uses them (the settings echo, a token-only update keeps the secret)."""
    assert (
        await client.put("/v1/wecom/config", json=VALID, headers=auth(tenant, "admin"))
    ).status_code == 200
    pool = contact_app.state.pool
    row = await pool.fetchrow(
        "SELECT token, encoding_aes_key, secret FROM wecom_config WHERE tenant_id = $1", tenant
    )
    for column, plain in (("token", TOKEN), ("encoding_aes_key", KEY), ("secret", SECRET)):
        assert row[column].startswith("sealed:v1:dev:") and plain not in row[column], column
    # Rotating the token alone leaves the sealed secret as it was, and it still opens.
    rotated = {k: v for k, v in VALID.items() if k != "secret"} | {"token": "NewTok1"}
    assert (
        await client.put("/v1/wecom/config", json=rotated, headers=auth(tenant, "admin"))
    ).status_code == 200
    after = await pool.fetchrow("SELECT token, secret FROM wecom_config WHERE tenant_id = $1", tenant)
    assert after["secret"] == row["secret"] and after["token"] != row["token"]
    stored = await wecom_store.get_config(pool, contact_app.state.settings.secret_box, tenant)
    assert stored is not None and (stored.token, stored.secret) == ("NewTok1", SECRET)
