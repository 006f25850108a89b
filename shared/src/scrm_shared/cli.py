"""``scrm``: the platform's command line.

Shared commands live here (``scrm token``, ``scrm schemas export``); a service adds its own
command group through the ``scrm.cli`` entry-point group (name -> ``module:typer_app``), so this
package never imports a service.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

app = typer.Typer(help="SCRM event platform command line", no_args_is_help=True)
schemas_app = typer.Typer(help="Event JSON Schemas", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
secrets_app = typer.Typer(
    help="Keys sealing tenants' secrets at rest (SCRM_SECRETS_KEYS)", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")


@app.command()
def token(
    tenant: Annotated[str, typer.Option(help="tenant id the token is for")],
    role: Annotated[str, typer.Option(help="admin | operator | guide")],
    staff: Annotated[str | None, typer.Option(help="WeCom userid of the guide (role guide)")] = None,
    ttl_hours: Annotated[int, typer.Option(help="validity in hours")] = 12,
) -> None:
    """Print a bearer token signed with SCRM_JWT_SECRET, for local use."""
    from scrm_shared.auth import issue_token
    from scrm_shared.config import PlatformSettings

    settings = PlatformSettings()
    try:
        typer.echo(issue_token(settings, tenant=tenant, role=role, staff_id=staff, ttl_hours=ttl_hours))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@schemas_app.command("export")
def export_schemas(
    out: Annotated[str | None, typer.Option(help="target folder (default: shared/schemas)")] = None,
) -> None:
    """Write the JSON Schema file of every event type."""
    from scrm_shared.events.schema_export import export_all

    for path in export_all(out):
        typer.echo(str(path))


@secrets_app.command("new-key")
def new_secrets_key() -> None:
    """Print a fresh 32-byte key, base64: put it first in SCRM_SECRETS_KEYS as "<id>:<key>"."""
    from scrm_shared.secrets import new_key

    typer.echo(new_key())


def _load_plugins() -> None:
    for ep in entry_points(group="scrm.cli"):
        app.add_typer(ep.load(), name=ep.name)


def main() -> None:
    _load_plugins()
    app()
