"""/v1/contacts routes (in progress)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
