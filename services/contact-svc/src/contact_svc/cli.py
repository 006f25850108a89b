"""`scrm contacts ...`: contact-svc's operator commands (registered via the scrm.cli entry point)."""

from __future__ import annotations

import typer

app = typer.Typer(help="contact-svc: contacts and WeCom", no_args_is_help=True)
