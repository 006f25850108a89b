"""Dependencies the routes share."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from tag_svc.config import TagSettings


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's connection pool (built by the lifespan)."""
    return request.app.state.pool  # type: ignore[no-any-return]


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def get_settings(request: Request) -> TagSettings:
    """The service's settings (set on the app by the service factory)."""
    return request.app.state.settings  # type: ignore[no-any-return]


Settings = Annotated[TagSettings, Depends(get_settings)]
