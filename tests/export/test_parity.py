"""The ONNX parity check on hand-made models: NaN or inf never passes, even where torch and ONNX agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from heimdall_cli.export.interface import INPUT_NAME, OUTPUT_NAME
from heimdall_cli.export.parity import check_parity

COLUMNS = ["lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m"]


class SumHead(nn.Module):
    """[n, slots, width] -> the first 4 per-slot sums, times ``scale`` per column."""

    def __init__(self, scale: list[float]) -> None:
        super().__init__()
        self.scale = torch.tensor(scale, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=2)[:, :4] * self.scale


def onnx_sum_head(scale: list[float]):
    """The same computation as :class:`SumHead`, written as an ONNX graph by hand (no exporter involved)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([2], np.int64), "axes"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([4], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "slice_axes"),
             numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    nodes = [helper.make_node("ReduceSum", [INPUT_NAME, "axes"], ["sums"], keepdims=0),
             helper.make_node("Slice", ["sums", "starts", "ends", "slice_axes"], ["head"]),
             helper.make_node("Mul", ["head", "scale"], [OUTPUT_NAME])]
    graph = helper.make_graph(
        nodes, "sum_head",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 7, 6])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(8, 7, 6)).astype(np.float32)


def test_agreeing_finite_outputs_pass(batch):
    parity = check_parity(SumHead([1, 1, 1, 1]), onnx_sum_head([1, 1, 1, 1]), batch, COLUMNS)
    assert parity.ok and not parity.worst
    assert parity.batch_sizes == [8, 1] and max(parity.max_abs_diff.values()) < 1e-5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_outputs_fail_even_when_both_runtimes_agree(batch, bad):
    scale = [1.0, 1.0, bad, 1.0]  # sigma_east_m is NaN (or inf) in torch and in ONNX alike
    module, model = SumHead(scale), onnx_sum_head(scale)
    with torch.no_grad():
        assert not np.isfinite(module(torch.from_numpy(batch)).numpy()[:, 2]).any()
    parity = check_parity(module, model, batch, COLUMNS)
    assert not parity.ok
    assert set(parity.worst) == {"sigma_east_m"}, parity.worst  # the other columns agree and are finite


def test_onnx_nan_against_finite_torch_fails(batch):
    parity = check_parity(SumHead([1, 1, 1, 1]), onnx_sum_head([1, float("nan"), 1, 1]), batch, COLUMNS)
    assert not parity.ok and set(parity.worst) == {"lon_deg"}
