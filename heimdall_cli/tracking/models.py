"""MLflow model flavours: save and load the ``mlflow.pytorch`` model, save the ``mlflow.onnx`` one.

Every logged model pins its runtime requirements (``pinned_requirements``) instead of
letting MLflow infer them, which is slow and guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import NotFound


def pinned_requirements(*packages: str) -> list[str]:
    """``name==installed version`` for each package (the pip requirements of a logged model)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in packages]


def save_pytorch_model(model: Any, path: str | Path, *, input_example: Any, signature: Any = None,
                       metadata: Mapping[str, Any] | None = None, dynamic_axes: tuple[int, ...] = ()) -> Path:
    """Save ``model`` locally with the ``mlflow.pytorch`` flavour (signature, input example).

    ``dynamic_axes``: input axes besides the batch that take any size (-1 in the inferred signature, so the
    exported program keeps them dynamic).
    """
    import mlflow.pytorch
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import Schema, TensorSpec

    if signature is None:
        import torch

        with torch.no_grad():
            output = model(torch.as_tensor(input_example)).numpy()
        signature = infer_signature(input_example, output)
        if dynamic_axes:
            spec = signature.inputs.inputs[0]
            shape = tuple(-1 if i in dynamic_axes else d for i, d in enumerate(spec.shape))
            signature = ModelSignature(Schema([TensorSpec(spec.type, shape)]), signature.outputs)
    with translated("Saving the model"):
        mlflow.pytorch.save_model(model, str(path), signature=signature, input_example=input_example,
                                  pip_requirements=pinned_requirements("torch", "mlflow", "numpy"),
                                  metadata=dict(metadata or {}))
    return Path(path)


def load_pytorch_model(path: str | Path, what: str) -> Any:
    """The torch module of a local ``mlflow.pytorch`` model folder, on the CPU."""
    import mlflow.pytorch

    with translated(f"Loading {what}"):
        return mlflow.pytorch.load_model(str(path), map_location="cpu")


def read_mlmodel(path: str | Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of a local model folder (flavours, signature, metadata)."""
    import yaml

    try:
        return yaml.safe_load((Path(path) / "MLmodel").read_text()) or {}
    except OSError as e:
        raise NotFound(f"The model at {path} has no MLmodel file.") from e


def save_onnx_model(model: Any, path: str | Path, *, input_example: Any, prediction: Any,
                    metadata: Mapping[str, Any]) -> Path:
    """Save an ``onnx.ModelProto`` locally with the ``mlflow.onnx`` flavour."""
    import mlflow.onnx
    from mlflow.models import infer_signature

    with translated("Saving the ONNX model"):
        mlflow.onnx.save_model(
            model, str(path), signature=infer_signature(input_example, prediction), input_example=input_example,
            pip_requirements=pinned_requirements("mlflow", "onnx", "onnxruntime", "numpy"),
            metadata=dict(metadata), save_as_external_data=False,
        )
    return Path(path)
