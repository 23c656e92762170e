"""``heimdall data …``: write and inspect datasets in the project's sharded format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt

app = typer.Typer(help="Write and inspect datasets (sharded format with a manifest).", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder, or s3://BUCKET/PREFIX to upload.")],
    samples: Annotated[int, typer.Option("--samples", min=1, help="Number of transmissions.")] = 20000,
    seed: Annotated[int, typer.Option(min=0, help="Seed: the same seed gives the same bytes.")] = 0,
    shard_size: Annotated[int, typer.Option(min=1, help="Samples per shard.")] = 4096,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate a synthetic dataset of what the WebSDR receivers hear (world from data.world).

    Examples:

      heimdall data synth --out data/rf-20k --samples 20000 --seed 0

      heimdall data synth --out s3://heimdall-datasets/rf-20k --samples 20000
    """
    import tempfile

    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.data.shards import write_dataset
    from heimdall_cli.data.store import upload_dataset

    settings = settings_for(config)
    world = settings.data.world
    if out.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="heimdall-synth-") as tmp:
            write_dataset(Path(tmp), samples, seed, world, shard_size=shard_size)
            manifest = upload_dataset(tmp, out, settings.storage)
    else:
        manifest = write_dataset(Path(out), samples, seed, world, shard_size=shard_size, overwrite=overwrite)
    _show(manifest, out, json_out)


@app.command("info")
def info(
    source: Annotated[str, typer.Argument(help="Dataset folder or s3://BUCKET/PREFIX.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a dataset's manifest (verifies every shard's hash).

    Example:

      heimdall data info data/rf-20k
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.data.store import open_dataset

    settings = settings_for(config)
    reader = open_dataset(source, settings.storage)
    _show(reader.manifest, source, json_out)


def _show(manifest: Any, where: str, json_out: bool) -> None:
    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table

    data = manifest.to_json()

    def human(console: Any) -> None:
        rows = [("location", where), ("samples", data.get("samples")), ("shards", len(data.get("shards", []))),
                ("content hash", data.get("content_hash")), ("format", f"{data.get('format')} v{data.get('version')}")]
        console.print(table("Dataset", ["", "value"], rows))

    make_output(json_out).result(data, human=human)
