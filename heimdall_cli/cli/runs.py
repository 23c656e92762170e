"""``heimdall runs …``: find, list, show and compare runs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Find, list, show and compare runs.", no_args_is_help=True)
