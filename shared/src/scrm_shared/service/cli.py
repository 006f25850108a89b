"""The command line of one service: ``<svc> api`` and ``<svc> worker``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import typer

from scrm_shared.service.app import ServiceSpec, create_service_app, run_api
from scrm_shared.service.settings import ServiceSettings
from scrm_shared.service.worker import BackgroundTask, FaustBuilder, HandlerBuilder, run_worker


def service_cli(
    spec: ServiceSpec,
    settings_factory: Callable[[], ServiceSettings],
    *,
    topics: Sequence[str],
    build_handler: HandlerBuilder,
    background: Sequence[BackgroundTask] = (),
    faust_app: FaustBuilder | None = None,
) -> typer.Typer:
    """A typer app with the service's two process kinds; settings are built at command time."""
    cli = typer.Typer(help=f"{spec.name}: {spec.description}", no_args_is_help=True)

    @cli.command()
    def api() -> None:
        """Serve the HTTP API (OpenAPI at /docs)."""
        settings = settings_factory()
        run_api(create_service_app(spec, settings), settings)

    @cli.command()
    def worker() -> None:
        """Consume this service's topics through the shared batch loop."""
        run_worker(
            spec,
            settings_factory(),
            topics=topics,
            build_handler=build_handler,
            background=background,
            faust_app=faust_app,
        )

    return cli
