"""Bearer-JWT auth: token round trip, every 401 reason, 403 for roles, all as problem details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from scrm_shared import problems
from scrm_shared.auth import (
    AdminOnly,
    AdminOrOperator,
    AnyRole,
    InvalidToken,
    Principal,
    decode_token,
    issue_token,
    require_roles,
)
from scrm_shared.config import PlatformSettings

# 64+ bytes: PyJWT warns (an error under pytest) about HMAC keys shorter than the hash.
SECRET = "unit-test-secret-" + "0123456789abcdef" * 4
OTHER_SECRET = "another-secret-" + "fedcba9876543210" * 4


def settings() -> PlatformSettings:
    return PlatformSettings(env="test", jwt_secret=SECRET)


def make_app(*, with_settings: bool = True) -> FastAPI:
    app = FastAPI()
    if with_settings:
        app.state.settings = settings()
    problems.install(app)

    @app.get("/me")
    async def me(principal: AnyRole) -> dict[str, Any]:
        return {"tenant": principal.tenant_id, "role": principal.role, "staff_id": principal.staff_id}

    @app.get("/admin")
    async def admin(principal: AdminOnly) -> dict[str, str]:
        return {"role": principal.role}

    @app.get("/ops")
    async def ops(principal: AdminOrOperator) -> dict[str, str]:
        return {"role": principal.role}

    return app


async def call(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get(path, headers=headers or {})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_token(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def future(seconds: int = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- issuing and decoding -------------------------------------------------------------------


def test_token_round_trip() -> None:
    token = issue_token(settings(), tenant="acme", role="guide", staff_id="zhangsan", subject="u-1")

    principal = decode_token(token, SECRET)

    assert principal == Principal(tenant_id="acme", role="guide", staff_id="zhangsan", subject="u-1")
    assert principal.is_guide
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_token_without_staff_for_operator() -> None:
    token = issue_token(settings(), tenant="acme", role="operator", ttl_hours=1)

    assert decode_token(token, SECRET) == Principal(tenant_id="acme", role="operator")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": "acme", "role": "root"},
        {"tenant": "acme", "role": "guide"},
        {"tenant": "Acme Corp", "role": "admin"},
        {"tenant": "acme", "role": "admin", "ttl_hours": 0},
        {"tenant": "acme", "role": "guide", "staff_id": "  "},
    ],
)
def test_issue_token_refuses_what_services_would_refuse(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        issue_token(settings(), **kwargs)


def test_decode_rejects_wrong_secret() -> None:
    token = issue_token(settings(), tenant="acme", role="admin")

    with pytest.raises(InvalidToken, match="signature"):
        decode_token(token, OTHER_SECRET)


def test_require_roles_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError):
        require_roles("superuser")
    with pytest.raises(ValueError):
        require_roles()


# --- the dependencies over HTTP -------------------------------------------------------------


def _unauthorized_cases() -> list[tuple[str, dict[str, str]]]:
    exp = future()
    return [
        ("missing header", {}),
        ("wrong scheme", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("scheme only", {"Authorization": "Bearer"}),
        ("garbage", bearer("not-a-jwt")),
        (
            "bad signature",
            bearer(raw_token({"tenant": "acme", "role": "admin", "exp": exp}, secret=OTHER_SECRET)),
        ),
        ("expired", bearer(raw_token({"tenant": "acme", "role": "admin", "exp": future(-60)}))),
        ("missing exp", bearer(raw_token({"tenant": "acme", "role": "admin"}))),
        ("missing tenant", bearer(raw_token({"role": "admin", "exp": exp}))),
        ("missing role", bearer(raw_token({"tenant": "acme", "exp": exp}))),
        ("unknown role", bearer(raw_token({"tenant": "acme", "role": "root", "exp": exp}))),
        ("guide without staff", bearer(raw_token({"tenant": "acme", "role": "guide", "exp": exp}))),
        ("tenant not a slug", bearer(raw_token({"tenant": "ACME/../x", "role": "admin", "exp": exp}))),
        (
            "other algorithm",
            bearer(raw_token({"tenant": "acme", "role": "admin", "exp": exp}, algorithm="HS512")),
        ),
        (
            "alg none",
            bearer(jwt.encode({"tenant": "acme", "role": "admin", "exp": exp}, None, algorithm="none")),
        ),
    ]


@pytest.mark.parametrize(
    ("case", "headers"), _unauthorized_cases(), ids=[c for c, _ in _unauthorized_cases()]
)
async def test_unauthorized_is_problem_with_challenge(case: str, headers: dict[str, str]) -> None:
    response = await call(make_app(), "/me", headers)

    assert response.status_code == 401, case
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["instance"] == "/me"
    assert body["detail"]
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    if len(token) > 12:
        assert token not in response.text


async def test_invalid_token_challenge_names_the_error() -> None:
    response = await call(make_app(), "/me", bearer("not-a-jwt"))

    assert response.headers["www-authenticate"] == 'Bearer realm="scrm", error="invalid_token"'


async def test_expired_within_leeway_is_accepted() -> None:
    token = raw_token({"tenant": "acme", "role": "admin", "exp": future(-3)})

    response = await call(make_app(), "/me", bearer(token))

    assert response.status_code == 200


async def test_expired_detail_says_so() -> None:
    token = raw_token({"tenant": "acme", "role": "admin", "exp": future(-60)})

    response = await call(make_app(), "/me", bearer(token))

    assert response.json()["detail"] == "token expired"


@pytest.mark.parametrize(
    ("path", "role", "staff_id"),
    [("/admin", "operator", None), ("/admin", "guide", "g1"), ("/ops", "guide", "g1")],
)
async def test_role_not_allowed_is_403_problem(path: str, role: str, staff_id: str | None) -> None:
    token = issue_token(settings(), tenant="acme", role=role, staff_id=staff_id)

    response = await call(make_app(), path, bearer(token))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 403
    assert body["type"] == "urn:scrm:problem:forbidden-role"
    assert role in body["detail"]
    assert "admin" in body["allowed_roles"]


@pytest.mark.parametrize(
    ("path", "role", "staff_id"),
    [
        ("/admin", "admin", None),
        ("/ops", "admin", None),
        ("/ops", "operator", None),
        ("/me", "guide", "g1"),
    ],
)
async def test_allowed_role_gets_through(path: str, role: str, staff_id: str | None) -> None:
    token = issue_token(settings(), tenant="acme", role=role, staff_id=staff_id)

    response = await call(make_app(), path, bearer(token))

    assert response.status_code == 200
    assert response.json()["role"] == role


async def test_guide_principal_carries_tenant_and_staff() -> None:
    token = issue_token(settings(), tenant="acme", role="guide", staff_id="wang.wu")

    response = await call(make_app(), "/me", bearer(token))

    assert response.json() == {"tenant": "acme", "role": "guide", "staff_id": "wang.wu"}


async def test_secret_comes_from_app_state_per_request() -> None:
    app = make_app()
    token = issue_token(settings(), tenant="acme", role="admin")
    assert (await call(app, "/me", bearer(token))).status_code == 200

    app.state.settings = PlatformSettings(env="test", jwt_secret=OTHER_SECRET)

    assert (await call(app, "/me", bearer(token))).status_code == 401


async def test_app_without_settings_is_a_server_error_not_a_pass() -> None:
    token = issue_token(settings(), tenant="acme", role="admin")

    response = await call(make_app(with_settings=False), "/me", bearer(token))

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"


async def test_openapi_documents_the_bearer_scheme() -> None:
    response = await call(make_app(), "/openapi.json")

    [scheme] = response.json()["components"]["securitySchemes"].values()
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
