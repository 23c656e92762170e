"""Torch -> ONNX for the deployed localizer (torch and onnx only; no MLflow).

``mlflow.pytorch.load_model`` of a ``pt2`` model returns the ``torch.export`` graph
module (``ExportedProgram.module()``). That object refuses ``train()``/``eval()``,
and the torch.export-based ONNX exporter needs ``onnxscript`` (not installed), so
the graph is traced with the TorchScript exporter behind a thin wrapper. Three aten
ops of the projections have no TorchScript symbolic (``sinc``, ``rad2deg``, ``deg2rad``);
they are registered here. The head computes in float64, and onnxruntime's CPU kernels
for ``Asin``/``Atan`` are float32 only: those nodes get Casts around them (about
1e-7 rad, i.e. < 1 m, well inside the parity tolerance).

The interface (names, columns, dynamic batch axis) is :mod:`heimdall_cli.export.interface`.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from typing import Any

import numpy as np

from heimdall_cli.export.interface import INPUT_NAME, OUTPUT_NAME

DEFAULT_OPSET = 17


class _Traceable:
    """Wrap a module so the TorchScript exporter may call ``train(False)`` on it."""

    @staticmethod
    def wrap(module: Any) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def train(self, mode: bool = True) -> Wrapper:  # torch.export modules refuse train()/eval()
                return self

            def forward(self, x: Any) -> Any:
                return self.inner(x)

        return Wrapper(module)


_registered = False


def _register_symbolics() -> None:
    global _registered
    if _registered:
        return
    import torch
    from torch.onnx import register_custom_op_symbolic

    def const(g: Any, value: float, like: Any) -> Any:
        return g.op("CastLike", g.op("Constant", value_t=torch.tensor(value, dtype=torch.float64)), like)

    def sinc(g: Any, x: Any) -> Any:
        px = g.op("Mul", x, const(g, math.pi, x))
        is_zero = g.op("Equal", px, const(g, 0.0, x))
        safe = g.op("Where", is_zero, const(g, 1.0, x), px)
        return g.op("Where", is_zero, const(g, 1.0, x), g.op("Div", g.op("Sin", safe), safe))

    def rad2deg(g: Any, x: Any) -> Any:
        return g.op("Mul", x, const(g, 180.0 / math.pi, x))

    def deg2rad(g: Any, x: Any) -> Any:
        return g.op("Mul", x, const(g, math.pi / 180.0, x))

    register_custom_op_symbolic("aten::sinc", sinc, 15)
    register_custom_op_symbolic("aten::rad2deg", rad2deg, 15)
    register_custom_op_symbolic("aten::deg2rad", deg2rad, 15)
    _registered = True


def to_onnx(module: Any, example: np.ndarray, *, opset: int = DEFAULT_OPSET) -> Any:
    """Export ``module`` (nn.Module or torch.export graph module) to an ``onnx.ModelProto``."""
    import onnx
    import torch

    _register_symbolics()
    buffer = io.BytesIO()
    x = torch.from_numpy(np.ascontiguousarray(example[: max(2, min(len(example), 4))], dtype=np.float32))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Traceable.wrap(module), (x,), buffer, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    return make_runnable(model)


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
