"""/v1/channels routes (in progress)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/channels", tags=["channels"])
