"""/v1/transfers: move customers from one staff member to another (在职/离职继承)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, status

from contact_svc.api.contacts import Pool
from contact_svc.domain.transfers import (
    TRANSFER_LIMIT,
    TRANSFER_WINDOW,
    NotFollowed,
    StaffUnavailable,
    TransferLimitReached,
    TransferRequest,
)
from contact_svc.schemas import Transfer, TransferIn, TransferItem
from contact_svc.store import transfers as store
from scrm_shared.auth import AdminOrOperator
from scrm_shared.problems import Problem

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])

TransferId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "",
    response_model=Transfer,
    status_code=status.HTTP_201_CREATED,
    summary="Transfer customers to another staff member",
    responses={
        409: {"description": "Some customers were transferred twice in the last 90 days; nothing moved."},
        422: {"description": "Some customers are not followed by from_staff (or already by to_staff)."},
    },
)
async def create_transfer(body: TransferIn, principal: AdminOrOperator, pool: Pool) -> Transfer:
    """Move customers from ``from_staff`` to ``to_staff`` (all or nothing) and publish
    ``contacts-transferred``."""
    request = TransferRequest(
        tenant_id=principal.tenant_id,
        from_staff=body.from_staff,
        to_staff=body.to_staff,
        external_userids=tuple(body.external_userids),
        kind=body.kind,
    )
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                transfer_id = await store.create_transfer(
                    conn, request, created_by=principal.subject, now=datetime.now(UTC)
                )
            view = await store.get_transfer(conn, principal.tenant_id, transfer_id)
    except NotFollowed as exc:
        raise Problem(
            422,
            "Customers not transferable",
            "every customer must be followed by from_staff and not yet by to_staff; nothing moved",
            type="transfer-not-followed",
            not_followed=exc.not_followed,
            already_followed=exc.already_followed,
        ) from None
    except StaffUnavailable as exc:
        raise Problem(422, "Staff member resigned", str(exc), type="transfer-staff-resigned") from None
    except TransferLimitReached as exc:
        raise Problem(
            409,
            "Transfer limit reached",
            f"WeCom transfers a customer at most {TRANSFER_LIMIT} times in {TRANSFER_WINDOW.days} days; "
            "nothing moved",
            type="transfer-limit-reached",
            customers=exc.customers,
        ) from None
    assert view is not None
    return _shape(view)


@router.get("/{transfer_id}", response_model=Transfer, summary="One transfer and its customers")
async def get_transfer(transfer_id: TransferId, principal: AdminOrOperator, pool: Pool) -> Transfer:
    """A transfer and the state of each of its customers."""
    view = await store.get_transfer(pool, principal.tenant_id, transfer_id)
    if view is None:
        raise Problem(404, "Transfer not found", type="transfer-not-found")
    return _shape(view)


def _shape(view: store.TransferView) -> Transfer:
    t = view.transfer
    return Transfer(
        transfer_id=t["transfer_id"],
        from_staff=t["from_staff"],
        to_staff=t["to_staff"],
        kind=t["kind"],
        created_at=t["created_at"],
        items=[TransferItem(**dict(i)) for i in view.items],
    )
