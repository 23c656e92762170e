"""Torch -> ONNX for the deployed localizer (torch, onnx and onnxscript only; no MLflow).

The exporter is PyTorch's current one, ``torch.onnx.export(..., dynamo=True)``: it
captures the model with ``torch.export`` and translates the graph with ``onnxscript``.
It takes the ``torch.export`` graph module that ``mlflow.pytorch.load_model`` returns
for a ``pt2`` model as it is. The batch axis is dynamic (``torch.export.Dim``). The head
computes in float64, and onnxruntime's CPU kernels for ``Asin``/``Acos``/``Atan`` are
float32 only: those nodes get Casts around them (about 1e-7 rad, i.e. < 1 m, well
inside the parity tolerance).

The interface (names, columns, dynamic batch axis) is :mod:`heimdall_cli.export.interface`.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np

from heimdall_cli.export.interface import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, UNCERTAINTY_NAME


def with_uncertainty(module: Any) -> Any:
    """``module`` with a second output ``uncertainty`` [batch, 3] = (σ east m, σ north m, θ = 0 rad)."""
    import torch

    class TwoOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            prediction = self.inner(receivers)
            sigma = prediction[:, 2:4]
            return prediction, torch.cat([sigma, torch.zeros_like(sigma[:, :1])], dim=1)

    return TwoOutputs()


def to_onnx(module: Any, example: np.ndarray, *, opset: int = DEFAULT_OPSET) -> Any:
    """Export ``module`` (nn.Module or torch.export graph module) to an ``onnx.ModelProto`` with the outputs
    ``prediction`` and ``uncertainty`` (:mod:`heimdall_cli.export.interface`)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(example[: max(2, min(len(example), 4))], dtype=np.float32))
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            with_uncertainty(module), (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, UNCERTAINTY_NAME],
            dynamic_shapes=({0: batch},), verbose=False,
        )
    return make_runnable(program.model_proto)


class _quiet_exporter:
    """Keep the exporter's progress lines ("[torch.onnx] Obtain model graph ...") off the console."""

    def __enter__(self) -> None:
        self._loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for lg, level in zip(self._loggers, self._levels, strict=True):
            lg.setLevel(level)


def make_runnable(model: Any, max_rounds: int = 10) -> Any:
    """Wrap float64 nodes that onnxruntime's CPU provider cannot run in float32 Casts."""
    import onnxruntime as ort

    wrapped: set[str] = set()
    for _ in range(max_rounds):
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return model
        except Exception as e:
            missing = re.search(r"Could not find an implementation for (\w+)\(", str(e))
            if not missing or missing[1] in wrapped:
                raise
            wrapped.add(missing[1])
            model = _cast_double_nodes(model, missing[1])
    return model


def _cast_double_nodes(model: Any, op_type: str) -> Any:
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    nodes = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != op_type or types.get(node.input[0]) != TensorProto.DOUBLE:
            nodes.append(node)
            continue
        inputs = []
        for j, name in enumerate(node.input):
            cast = f"{name}__f32_{i}_{j}"
            nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT))
            inputs.append(cast)
        outputs = [f"{name}__f32_{i}" for name in node.output]
        del node.input[:]
        node.input.extend(inputs)
        original = list(node.output)
        del node.output[:]
        node.output.extend(outputs)
        nodes.append(node)
        nodes.extend(helper.make_node("Cast", [o], [name], to=TensorProto.DOUBLE)
                     for o, name in zip(outputs, original, strict=True))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
