"""WeCom callback and WeCom settings routes (in progress)."""

from fastapi import APIRouter

callback_router = APIRouter(prefix="/wecom", tags=["wecom callback"])
config_router = APIRouter(prefix="/v1/wecom", tags=["wecom settings"])
