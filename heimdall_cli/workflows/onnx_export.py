"""``model export --format onnx``: ONNX next to the registered torch model, checked for parity.

Steps: resolve the version, download its ``mlflow.pytorch`` model, export it
(:mod:`heimdall_cli.export.onnx`), compare onnxruntime with torch on real samples
(regenerated from the source run's synthetic-world params; the model's input example
when that is not possible), then save an ``mlflow.onnx`` model into the source run at
``onnx/`` and, with ``register``, add it as a version of ``tracking.onnx_model_name``.
Nothing is logged when parity fails.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heimdall_cli.errors import ConfigError, NotFound, WorkFailed
from heimdall_cli.export.interface import (
    DEFAULT_OPSET,
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_COLUMNS,
    OUTPUT_NAME,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_NAME,
)
from heimdall_cli.tracking import registry
from heimdall_cli.tracking.models import load_pytorch_model, read_mlmodel, save_onnx_model

if TYPE_CHECKING:
    from heimdall_cli.tracking import RunRecord, RunTracker, VersionRecord

ARTIFACT_PATH = "onnx"


@dataclass
class OnnxExport:
    """What ``model export`` produced (``--json``)."""

    name: str
    version: int
    run_id: str
    format: str
    model_uri: str  # runs:/RUN_ID/onnx
    opset: int
    input: dict[str, Any]
    output: dict[str, Any]
    samples_source: str
    parity: dict[str, Any]
    uncertainty: dict[str, Any] = field(default_factory=dict)  # output 1 of the ONNX graph
    registered: dict[str, Any] | None = None
    file: str | None = None
    size_bytes: int = 0


def export_onnx(
    tracker: RunTracker,
    *,
    model_name: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    register: bool = False,
    output: Path | None = None,
    samples: int = 64,
    opset: int = DEFAULT_OPSET,
    wait_s: float | None = None,
    model_id: str | None = None,
) -> OnnxExport:
    """Export a registered version to ONNX; see the module docstring."""
    from heimdall_cli.export.onnx import to_onnx
    from heimdall_cli.export.parity import check_parity

    if samples < 2:
        raise ConfigError(f"--samples {samples} is too small.", "Use at least 2 samples for the parity check.")
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset} is too old.", f"Use opset {MIN_OPSET} or newer.")
    name = model_name or tracker.settings.tracking.model_name
    if model_id:  # a logged model (models:/m-…): exported from its files, logged into its run
        model_id = model_id.removeprefix("models:/")
        name = f"models:/{model_id}"
        from heimdall_cli.tracking import VersionRecord

        record = VersionRecord(name=name, version=0, status="READY", source=name,
                               run_id=tracker.source_run_of(model_id), stage=None, tags={"heimdall.model_id": model_id})
    else:
        record = registry.resolve_version(tracker, name, version=version, alias=alias)
    if not record.run_id:
        raise NotFound(f"Version {record.version} of '{name}' has no source run to export from and log into.")
    run = tracker.get_run(record.run_id)
    with tempfile.TemporaryDirectory(prefix="heimdall-onnx-") as tmp:
        local = _download_model(tracker, run, record, Path(tmp) / "torch")
        meta = read_mlmodel(local)
        if "pytorch" not in meta.get("flavors", {}):
            raise WorkFailed(f"Version {record.version} of '{name}' is not an mlflow.pytorch model.",
                             "Export the torch model's registry entry, not the ONNX one.")
        module = load_pytorch_model(local, f"{name} version {record.version}")
        shape = _input_shape(meta, f"Version {record.version} of '{name}'")
        batch, source = _samples(run, local, shape, samples)
        columns = list(meta.get("metadata", {}).get("outputs") or OUTPUT_COLUMNS)
        try:
            model = to_onnx(module, batch, opset=opset)
        except Exception as e:
            raise WorkFailed(f"ONNX export of {name} version {record.version} failed: "
                             f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        parity = check_parity(module, model, batch, columns)
        parity_json = {**parity.__dict__}
        if not parity.ok:
            raise WorkFailed(
                f"ONNX parity check failed for {name} version {record.version}: max |onnx - torch| "
                + ", ".join(f"{k} {v:.3g}" for k, v in parity.max_abs_diff.items())
                + f"; worst {json.dumps(parity.worst)}.",
                "Nothing was logged. Tolerances: lat/lon 1e-4 deg; sigma 1 m + 0.01 %.",
            )
        result = OnnxExport(
            name=name, version=record.version, run_id=run.run_id, format="onnx",
            model_uri=f"runs:/{run.run_id}/{ARTIFACT_PATH}", opset=opset,
            input={"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", *shape[1:]]},
            output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(columns)],
                    "columns": columns},
            uncertainty={"name": UNCERTAINTY_NAME, "dtype": "float32", "shape": ["batch", 3],
                         "columns": list(UNCERTAINTY_COLUMNS)},
            samples_source=source, parity=parity_json, size_bytes=model.ByteSize(),
        )
        _log_onnx(tracker, run.run_id, model, batch, meta, result, Path(tmp) / "onnx")
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(model.SerializeToString())
            result.file = str(output)
    if register:
        registration = registry.register(
            tracker, model_name=tracker.settings.tracking.onnx_model_name, model_uri=result.model_uri,
            description=f"ONNX export of {name} version {record.version}",
            tags={"source_model": name, "source_version": str(record.version), "format": "onnx"}, wait_s=wait_s,
        )
        result.registered = {"name": registration.version.name, "version": registration.version.version,
                             "created": registration.created}
    return result


def _download_model(tracker: RunTracker, run: RunRecord, record: VersionRecord, dst: Path) -> Path:
    root = run.artifact_uri.rstrip("/") + "/"
    if not record.source.startswith(root) and record.tags.get("heimdall.model_id"):  # from a logged model
        dst.mkdir(parents=True, exist_ok=True)
        return tracker.download_artifacts(f"models:/{record.tags['heimdall.model_id']}", dst)
    if not record.source.startswith(root):
        raise WorkFailed(f"Version {record.version} source {record.source} is not inside its run's artifacts.",
                         "Register models with heimdall model register.")
    path = record.source[len(root):].strip("/")
    dst.mkdir(parents=True, exist_ok=True)
    return tracker.download_artifacts(path, dst, run_id=run.run_id)


def _input_shape(meta: dict[str, Any], what: str) -> list[int]:
    """The input tensor shape of the model's signature ([-1, slots, bands·frames + 9])."""
    try:
        inputs = json.loads(meta["signature"]["inputs"])
        return [int(d) for d in inputs[0]["tensor-spec"]["shape"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise WorkFailed(f"{what} has no tensor input signature to export from.",
                         "Log models with heimdall train (it records the signature).") from None


def _samples(run: RunRecord, local: Path, shape: list[int], n: int) -> tuple[np.ndarray, str]:
    """Real samples: the run's synthetic world regenerated; else the model's input example."""
    from heimdall_cli.data.packing import pack
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    params = run.params

    def value(text: str) -> Any:
        try:
            return json.loads(text)  # numbers, lists, true/false
        except ValueError:
            return {"True": True, "False": False}.get(text, text)

    def section(prefix: str) -> dict[str, Any]:
        return {k.removeprefix(prefix): value(v) for k, v in params.items() if k.startswith(prefix)}

    try:
        world = WorldSettings.model_validate(section("data.world."))
        features = FeatureSettings.model_validate(section("data.features."))
        seed = int(params.get("data.seed", "0"))
        batch = pack(generate(n, seed, world, features))
        if list(batch.shape[1:]) == shape[1:]:
            return batch, f"{n} samples of the run's synthetic world (data.seed {seed})"
    except Exception:  # not a synthetic-world run, or params from another tool
        pass
    example = _input_example(local)
    if example is None or list(example.shape[1:]) != shape[1:]:
        raise WorkFailed("No samples for the parity check: the run's world cannot be regenerated and the model "
                         "has no usable input example.")
    reps = int(np.ceil(n / len(example)))
    return np.concatenate([example] * reps)[:n], f"the model's input example ({len(example)} samples, tiled)"


def _input_example(local: Path) -> np.ndarray | None:
    path = local / "input_example.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("inputs", data.get("instances", data))
    try:
        return np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        return None


def _log_onnx(tracker: RunTracker, run_id: str, model: Any, batch: np.ndarray, meta: dict[str, Any],
              result: OnnxExport, local: Path) -> None:
    import onnxruntime as ort

    example = batch[:2]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    prediction, uncertainty = session.run([OUTPUT_NAME, UNCERTAINTY_NAME], {INPUT_NAME: example})
    metadata = {**meta.get("metadata", {}), "onnx_input": INPUT_NAME, "onnx_output": OUTPUT_NAME,
                "onnx_outputs": [OUTPUT_NAME, UNCERTAINTY_NAME], "uncertainty_columns": list(UNCERTAINTY_COLUMNS),
                "exported_from": result.name if result.name.startswith("models:/") else
                f"models:/{result.name}/{result.version}",
                "parity_max_abs_diff": result.parity["max_abs_diff"]}
    save_onnx_model(model, local, input_example=example,
                    prediction={OUTPUT_NAME: prediction, UNCERTAINTY_NAME: uncertainty}, metadata=metadata)
    tracker.log_artifacts(local, ARTIFACT_PATH, run_id=run_id)
