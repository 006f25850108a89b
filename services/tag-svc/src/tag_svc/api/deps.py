"""Dependencies the routes share."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's connection pool (built by the lifespan)."""
    return request.app.state.pool  # type: ignore[no-any-return]


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
