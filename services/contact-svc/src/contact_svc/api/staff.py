"""/v1/staff routes (in progress)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/staff", tags=["staff"])
