"""The ``heimdall`` command: the root app registers the command groups, nothing else.

Errors are turned into messages in one place (:class:`_Group`): a
:class:`~heimdall_cli.errors.HeimdallError` prints one line (plus a hint) and exits
with its code; ``-v`` or ``HEIMDALL_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from heimdall_cli import __version__
from heimdall_cli.cli import config, data, model, predict, reap, runs, sweep, train, ui, verify
from heimdall_cli.cli.output import render_error

_state = {"verbose": False}


class _Group(TyperGroup):
    """Root group: the single place where expected failures become exit codes."""

    def invoke(self, ctx: Any) -> Any:
        from heimdall_cli.errors import HeimdallError

        try:
            return super().invoke(ctx)
        except HeimdallError as e:
            render_error(e.message, e.hint, detail=_traceback() if _verbose() else None)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            render_error("Interrupted.")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of stdout went away (| head): stop quietly, as a shell tool does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise  # click/typer usage errors keep their own message and exit code 2
        except Exception as e:
            # An unexpected failure is still one scrubbed line (exit 1); -v shows the traceback.
            render_error(f"{type(e).__name__}: {e}".splitlines()[0], "Re-run with -v for the traceback.",
                         detail=_traceback() if _verbose() else None)
            raise typer.Exit(1) from None


def _verbose() -> bool:
    return _state["verbose"] or os.environ.get("HEIMDALL_DEBUG", "") not in ("", "0", "false")


def _traceback() -> str:
    return "".join(traceback.format_exception(*sys.exc_info()))


app = typer.Typer(
    name="heimdall",
    cls=_Group,
    help="Train Heimdall's RF transmitter-localization models and manage them in MLflow.\n\n"
    "Examples:\n\n"
    "  heimdall verify\n\n"
    "  heimdall train --config quickstart --run-name first-try\n\n"
    "  heimdall config init quickstart   (a copy of a packaged profile to edit)\n\n"
    "  heimdall runs best --metric val/loss --json\n\n"
    "  heimdall model promote --version 3 --stage Production",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"heimdall {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show details (tracebacks) on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train Heimdall's RF localization models and manage them in MLflow."""
    _state["verbose"] = verbose
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Library chatter goes to stderr at WARNING, scrubbed; our own results stay on stdout."""
    import logging

    from heimdall_cli.redact import install_log_scrubbing
    from heimdall_cli.tracking import quiet_mlflow

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic", "lightning", "lightning.pytorch", "lightning.fabric", "timm", "urllib3",
                 "botocore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    install_log_scrubbing()
    quiet_mlflow()


app.add_typer(config.app, name="config")
app.command(name="verify")(verify.verify)
app.command(name="train")(train.train)
runs.app.command("reap")(reap.reap)
app.add_typer(runs.app, name="runs")
app.add_typer(model.app, name="model")
app.add_typer(data.app, name="data")
app.add_typer(sweep.app, name="sweep")
app.command(name="predict")(predict.predict)
app.command(name="ui")(ui.ui)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="heimdall")
