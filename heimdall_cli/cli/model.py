"""``heimdall model …``: register, promote, roll back, list and export models."""

from __future__ import annotations

import typer

app = typer.Typer(help="Register, promote, roll back, list and export models.", no_args_is_help=True)
