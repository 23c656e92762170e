"""``heimdall config show``: the resolved configuration, and where each value came from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, TrackingUriOpt

app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("show")
def show(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="KEY=VALUE overrides, as train takes them, e.g. training.epochs=3.", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Name the source of every value.")] = False,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Only this setting, e.g. tracking.uri.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the resolved configuration (secrets masked).

    -q prints KEY=VALUE lines (with --key: the bare value). Exit 2 for an unknown --key.

    Precedence, highest first: flags > environment (HEIMDALL_SECTION__FIELD, MLFLOW_TRACKING_URI,
    MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) > .env > --config FILE > defaults.

    Examples:

      heimdall config show

      heimdall config show --config configs/default.yaml --explain

      heimdall config show training.epochs=3 --tracking-uri sqlite:///runs.db --explain

      heimdall config show --json | jq .tracking

      URI=$(heimdall config show --key tracking.uri -q)
    """
    from heimdall_cli.cli.common import make_output, settings_for
    from heimdall_cli.cli.output import table
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.settings import explain as explain_rows
    from heimdall_cli.settings import parse_overrides, to_display_dict

    settings = settings_for(config, tracking_uri, flags=parse_overrides(overrides or []))
    rows = explain_rows(settings)
    if key is not None:
        rows = [row for row in rows if row[0] == key]
        if not rows:
            raise ConfigError(f"No setting {key!r}.", "List them: heimdall config show")
    out = make_output(json_out, quiet)
    if quiet:
        out.result(None, bare=[str(rows[0][1])] if key else [f"{k}={v}" for k, v, _, _ in rows])
        return
    if key is not None and json_out:
        k, value, source, _ = rows[0]
        out.result({"key": k, "value": value, "source": source})
        return
    if json_out:
        data = to_display_dict(settings)
        if explain:
            data = {"settings": data, "sources": {key: source for key, _, source, _ in rows}}
        out.result(data)
        return
    columns = ["setting", "value", "source", "description"] if explain else ["setting", "value"]
    shown = [(k, v, s, d) if explain else (k, v) for k, v, s, d in rows]
    out.result(None, human=lambda console: console.print(table(None, columns, shown)))


@app.command("init")
def init(
    name: Annotated[str, typer.Argument(help="Packaged profile: quickstart, default or sweep.", show_default=False)],
    path: Annotated[
        Path | None,
        typer.Argument(help="Where to write it (default: ./NAME.yaml).", dir_okay=False, show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a packaged profile to a file you can edit, and print its path.

    stdout carries the path (--json: {"profile", "path"}); -q also drops the hint on stderr.
    Exit 2 for an unknown profile, or when the file exists (unless --force).

    Examples:

      heimdall config init quickstart

      heimdall config init default configs/gpu-box.yaml && heimdall train --config configs/gpu-box.yaml
    """
    from heimdall_cli.cli.common import make_output
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.settings.profiles import profile_path

    source = profile_path(name)
    target = path or Path(f"{name}.yaml")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists already.", f"Keep it, or overwrite it: heimdall config init {name} "
                          f"{target} --force")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot write {target}: {e.strerror}.", "Choose another PATH.") from None
    out = make_output(json_out, quiet)
    out.result({"profile": name, "path": str(target)}, bare=str(target),
               human=lambda console: console.print(str(target), markup=False, highlight=False, soft_wrap=True))
    command = "sweep start --name NAME" if name == "sweep" else "train"
    out.info(f"Wrote the {name} profile. Edit it, then: heimdall {command} --config {target}")
