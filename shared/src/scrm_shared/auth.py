"""Bearer-JWT authentication and role checks for every HTTP route.

Tokens are HS256 JWTs signed with ``settings.jwt_secret`` and carry:

- ``tenant``: the tenant slug the caller acts for (every query is scoped by it);
- ``role``: ``admin`` | ``operator`` | ``guide``;
- ``staff_id``: the WeCom userid of the guide, required when ``role`` is ``guide`` (a guide sees
  only the contacts that guide follows);
- ``exp`` (required), ``iat``, and an optional ``sub`` (who the token was issued to).

Routes take the caller through a dependency::

    @router.get("/v1/contacts")
    async def list_contacts(principal: AnyRole) -> ...: ...

    @router.post("/v1/tags")
    async def create_tag(principal: AdminOrOperator) -> ...: ...

The secret is read per request from ``request.app.state.settings.jwt_secret`` (each service puts
its settings there), never from the environment at import time. Failures are problem details:
401 with ``WWW-Authenticate: Bearer`` for a missing or invalid token, 403 for a role the route
does not allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from scrm_shared.config import PlatformSettings
from scrm_shared.events.primitives import TENANT_PATTERN
from scrm_shared.problems import Problem

__all__ = [
    "ALGORITHM",
    "LEEWAY_SECONDS",
    "ROLES",
    "AdminOnly",
    "AdminOrOperator",
    "AnyRole",
    "InvalidToken",
    "Principal",
    "Role",
    "decode_token",
    "get_principal",
    "issue_token",
    "require_roles",
]

Role = Literal["admin", "operator", "guide"]
ROLES: frozenset[str] = frozenset(get_args(Role))

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10
"""Clock skew tolerated on ``exp``/``iat`` between the issuer and the services."""

_TENANT = re.compile(TENANT_PATTERN)
_MAX_ID = 256
_REALM = 'Bearer realm="scrm"'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant they act for, their role, and (for guides) their staff id."""

    tenant_id: str
    role: Role
    staff_id: str | None = None
    subject: str | None = None

    @property
    def is_guide(self) -> bool:
        return self.role == "guide"


class InvalidToken(Exception):
    """The token cannot be trusted; ``str(exc)`` says why, without echoing the token."""


def issue_token(
    settings: PlatformSettings,
    *,
    tenant: str,
    role: str,
    staff_id: str | None = None,
    ttl_hours: float = 12,
    subject: str | None = None,
) -> str:
    """Sign a bearer token for ``tenant`` and ``role`` valid for ``ttl_hours``.

    Raises ``ValueError`` for claims the services would refuse (unknown role, a guide without
    ``staff_id``, a tenant that is not a slug, a non-positive lifetime).
    """
    if ttl_hours <= 0:
        raise ValueError("ttl_hours must be positive")
    principal = _principal_from_claims({"tenant": tenant, "role": role, "staff_id": staff_id, "sub": subject})
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "tenant": principal.tenant_id,
        "role": principal.role,
        "iat": now,
        "exp": now + timedelta(hours=ttl_hours),
    }
    if principal.staff_id is not None:
        claims["staff_id"] = principal.staff_id
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, _secret_of(settings.jwt_secret), algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> Principal:
    """Verify ``token`` (signature, ``exp`` with leeway) and return its principal.

    Raises :class:`InvalidToken` for anything not acceptable.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "tenant", "role"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"token lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidToken("token signature is invalid") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("token is malformed or not acceptable") from exc
    try:
        return _principal_from_claims(claims)
    except ValueError as exc:
        raise InvalidToken(str(exc)) from exc


_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="HS256 JWT with tenant, role (admin|operator|guide), staff_id for guides, exp.",
)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """FastAPI dependency: the authenticated caller, or a 401 problem."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("a bearer token is required", error=None)
    try:
        return decode_token(credentials.credentials, _secret_of(_settings_of(request).jwt_secret))
    except InvalidToken as exc:
        raise _unauthorized(str(exc), error="invalid_token") from None


def require_roles(*roles: str) -> Any:
    """A dependency giving the caller when their role is one of ``roles``, else a 403 problem."""
    unknown = set(roles) - ROLES
    if not roles or unknown:
        raise ValueError(f"require_roles needs roles from {sorted(ROLES)}, got {sorted(roles)}")
    allowed = frozenset(roles)

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Problem(
                403,
                "Forbidden",
                f"role {principal.role!r} may not perform this operation",
                type="forbidden-role",
                allowed_roles=sorted(allowed),
            )
        return principal

    dependency.__name__ = f"require_roles_{'_'.join(sorted(allowed))}"
    return dependency


AnyRole = Annotated[Principal, Depends(get_principal)]
"""Any authenticated caller."""
AdminOnly = Annotated[Principal, Depends(require_roles("admin"))]
AdminOrOperator = Annotated[Principal, Depends(require_roles("admin", "operator"))]


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    tenant = claims.get("tenant")
    role = claims.get("role")
    staff_id = claims.get("staff_id")
    subject = claims.get("sub")
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise ValueError("tenant claim is not a tenant slug")
    if role not in ROLES:
        raise ValueError("role claim is not one of admin, operator, guide")
    if staff_id is not None and (
        not isinstance(staff_id, str) or not staff_id.strip() or len(staff_id) > _MAX_ID
    ):
        raise ValueError("staff_id claim is not a staff id")
    if role == "guide" and staff_id is None:
        raise ValueError("a guide token needs a staff_id claim")
    if subject is not None and not isinstance(subject, str):
        raise ValueError("sub claim is not a string")
    return Principal(tenant_id=tenant, role=role, staff_id=staff_id, subject=subject)


def _settings_of(request: Request) -> PlatformSettings:
    settings = getattr(request.app.state, "settings", None)
    if settings is None:
        # A wiring mistake, not the caller's: surfaces as a 500 with the stack trace in the log.
        raise RuntimeError("app.state.settings is not set; the service must store its settings there")
    return settings


def _secret_of(secret: SecretStr | None) -> str:
    if secret is None or not secret.get_secret_value():
        raise RuntimeError("jwt_secret is not configured")
    return secret.get_secret_value()


def _unauthorized(detail: str, *, error: str | None) -> Problem:
    challenge = _REALM if error is None else f'{_REALM}, error="{error}"'
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})
