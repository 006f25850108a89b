"""/v1/transfers routes (in progress)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
