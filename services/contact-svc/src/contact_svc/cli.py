"""`scrm contacts ...`: contact-svc's operator commands (registered via the scrm.cli entry point).

Settings come from the environment like the service's own (``SCRM_DATABASE_URL``,
``SCRM_DB_SCHEMA``, ``SCRM_WECOM_API_BASE``, ...).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contact_svc.config import ContactSettings
from contact_svc.reconcile import DEFAULT_GRACE, Drift, ReconcileError, StaffDrift, reconcile
from contact_svc.wecom.client import WeComClient, WeComError
from scrm_shared.db.pool import create_pool

app = typer.Typer(help="contact-svc: contacts and WeCom", no_args_is_help=True)

SERVICE_SCHEMA = "contact"
EXIT_PARTIAL = 1
EXIT_USAGE = 2


@app.callback()
def contacts() -> None:
    """contact-svc: contacts and WeCom."""


@app.command("reconcile")
def reconcile_command(
    tenant: Annotated[str, typer.Option(help="tenant id (one WeCom corp)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report the drift, publish nothing")] = False,
    grace_seconds: Annotated[
        float,
        typer.Option(
            help="leave relations that changed this recently alone (their callback may be in flight)"
        ),
    ] = DEFAULT_GRACE.total_seconds(),
) -> None:
    """Compare the tenant's follows with WeCom's and repair the drift.

    For every staff member, WeCom's batch/get_by_user is compared with our active follows;
    repairs are friend-added / friend-deleted events through the outbox, which the worker
    applies. Exit code 0 when every staff member was checked, 1 when WeCom refused some of them
    (the others were repaired), 2 when reconciliation could not start.
    """
    console = Console()
    settings = ContactSettings()
    try:
        drift = asyncio.run(_run(settings, tenant, dry_run, timedelta(seconds=grace_seconds), console))
    except ReconcileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except WeComError as exc:
        # errcode only: WeCom's errmsg may echo request parameters.
        console.print(
            f"[red]error:[/red] WeCom refused the tenant's credentials ({exc.api} errcode {exc.errcode})"
        )
        raise typer.Exit(EXIT_USAGE) from None
    print_drift(drift, console)
    if drift.failed_staff:
        raise typer.Exit(EXIT_PARTIAL)


async def _run(
    settings: ContactSettings, tenant: str, dry_run: bool, grace: timedelta, console: Console
) -> Drift:
    pool = await create_pool(
        settings.database_url,
        schema=settings.db_schema or SERVICE_SCHEMA,
        min_size=1,
        max_size=2,
        wait_seconds=settings.startup_wait_seconds,
    )
    try:
        async with WeComClient(settings.wecom_api_base) as wecom:
            with _ProgressBar(console) as bar:
                return await reconcile(
                    pool, wecom, settings.secret_box, tenant, dry_run=dry_run, grace=grace, progress=bar
                )
    finally:
        await pool.close()


class _ProgressBar:
    """A rich progress bar over staff members (implements :class:`contact_svc.reconcile.Progress`)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("staff"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("drift {task.fields[drift]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task("staff", total=None, drift=0)
        self._drift = 0

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def started(self, staff_total: int) -> None:
        self._progress.update(self._task, total=staff_total)

    def staff_done(self, staff: StaffDrift) -> None:
        self._drift += len(staff.missing_here) + len(staff.gone_on_wecom)
        self._progress.update(self._task, advance=1, drift=self._drift)


def print_drift(drift: Drift, console: Console) -> None:
    """The report: a row per staff member with drift or an error, then the totals.

    Counts and staff userids only: never a customer's id or name.
    """
    rows = [s for s in drift.staff if s.drifted or s.errcode is not None]
    if rows:
        table = Table(title=f"drift of tenant {drift.tenant_id}")
        table.add_column("staff")
        for column in (
            "on WeCom",
            "active here",
            "missing here",
            "gone on WeCom",
            "ended here",
            "recent",
            "error",
        ):
            table.add_column(column, justify="right")
        for s in rows:
            table.add_row(
                Text(s.staff_id),  # plain text: an id is never rich markup
                str(s.on_wecom),
                str(s.active_here),
                str(len(s.missing_here)),
                str(len(s.gone_on_wecom)),
                str(s.ended_here),
                str(s.recent),
                "" if s.errcode is None else f"errcode {s.errcode}",
            )
        console.print(table)
    # Plain key=value lines: stable for scripts whatever the terminal width.
    console.print(
        f"staff={len(drift.staff)} drifted={len(drift.drifted_staff)} failed={len(drift.failed_staff)} "
        f"missing_here={drift.missing_here} gone_on_wecom={drift.gone_on_wecom} "
        f"ended_here={sum(s.ended_here for s in drift.staff)} recent={sum(s.recent for s in drift.staff)}",
        soft_wrap=True,
        markup=False,
    )
    if drift.dry_run:
        console.print("dry run: nothing published", soft_wrap=True)
    else:
        console.print(
            f"published={drift.published} (friend-added {drift.missing_here}, friend-deleted "
            f"{drift.gone_on_wecom}); the worker applies them",
            soft_wrap=True,
            markup=False,
        )
