"""Torch -> ONNX for the deployed localizer, and the onnxruntime parity check.

``mlflow.pytorch.load_model`` of a ``pt2`` model returns the ``torch.export`` graph
module (``ExportedProgram.module()``). That object refuses ``train()``/``eval()``,
and the torch.export-based ONNX exporter needs ``onnxscript`` (not installed), so
the graph is traced with the TorchScript exporter behind a thin wrapper. Two aten
ops of the lat/lon head have no TorchScript symbolic (``sinc``, ``rad2deg``); they
are registered here. The head computes in float64, and onnxruntime's CPU kernels
for ``Asin``/``Atan`` are float32 only: those nodes get Casts around them (about
1e-7 rad, i.e. < 1 m, well inside the parity tolerance).

ONNX interface: input ``spectrograms`` float32 [batch, receivers, n_mels, n_frames]
(raw log-mel dB), output ``prediction`` float32 [batch, 4] = lat_deg, lon_deg,
sigma_east_m, sigma_north_m. The batch axis is dynamic.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT_NAME = "spectrograms"
OUTPUT_NAME = "prediction"
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Tolerance:
    """How far onnxruntime may be from torch: |onnx - torch| <= atol + rtol * |torch|, per column."""

    degrees_atol: float = 1e-4  # lat/lon: 1e-4 deg is 11 m north-south, 8 m east-west at 45 deg N
    metres_atol: float = 1.0  # sigma: 1 m ...
    metres_rtol: float = 1e-4  # ... plus 0.01 % of the value

    def bounds(self, column: str) -> tuple[float, float]:
        """(atol, rtol) for an output column (``*_deg`` or ``*_m``)."""
        return (self.degrees_atol, 0.0) if column.endswith("_deg") else (self.metres_atol, self.metres_rtol)


@dataclass
class Parity:
    """Result of comparing onnxruntime with torch on the same inputs."""

    samples: int
    batch_sizes: list[int]
    max_abs_diff: dict[str, float]
    tolerance: dict[str, dict[str, float]]
    ok: bool
    worst: dict[str, Any] = field(default_factory=dict)


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

    register_custom_op_symbolic("aten::sinc", sinc, 15)
    register_custom_op_symbolic("aten::rad2deg", rad2deg, 15)
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


def check_parity(module: Any, model: Any, batch: np.ndarray, columns: list[str],
                 tolerance: Tolerance | None = None) -> Parity:
    """Run torch and onnxruntime on ``batch`` (whole, and a batch of one); compare per column."""
    import onnxruntime as ort
    import torch

    tolerance = tolerance or Tolerance()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    with torch.no_grad():
        expected = np.asarray(module(torch.from_numpy(batch)).detach().cpu().numpy(), dtype=np.float64)
    got_all = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    got_one = session.run([OUTPUT_NAME], {INPUT_NAME: batch[:1]})[0]
    got = np.concatenate([got_all, got_one]).astype(np.float64)
    ref = np.concatenate([expected, expected[:1]])
    if got.shape != ref.shape:
        raise ValueError(f"onnxruntime returned shape {got.shape[1:]}, torch {ref.shape[1:]}")
    names = list(columns) if len(columns) == ref.shape[1] else [f"output_{i}" for i in range(ref.shape[1])]
    diffs, bounds, ok, worst = {}, {}, True, {}
    for c, name in enumerate(names):
        atol, rtol = tolerance.bounds(name)
        bounds[name] = {"atol": atol, "rtol": rtol}
        delta = np.abs(got[:, c] - ref[:, c])
        diffs[name] = float(np.nanmax(delta)) if np.isfinite(delta).any() else float("nan")
        good = np.isclose(got[:, c], ref[:, c], rtol=rtol, atol=atol, equal_nan=True)
        if not good.all():
            ok = False
            i = int(np.argmin(good))
            worst[name] = {"sample": i % len(batch), "torch": float(ref[i, c]), "onnx": float(got[i, c])}
    return Parity(len(batch), [len(batch), 1], diffs, bounds, ok, worst)
