"""The parity check: onnxruntime against torch on the same inputs, per output column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heimdall_cli.export.interface import INPUT_NAME, OUTPUT_NAME


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


def check_parity(module: Any, model: Any, batch: np.ndarray, columns: list[str],
                 tolerance: Tolerance | None = None) -> Parity:
    """Run torch and onnxruntime on ``batch`` (whole, and a batch of one); compare per column.

    A non-finite value (NaN, inf) in either output fails the check, even where both agree.
    """
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
        with np.errstate(invalid="ignore"):  # inf - inf
            delta = np.abs(got[:, c] - ref[:, c])
        diffs[name] = float(np.nanmax(delta)) if np.isfinite(delta).any() else float("nan")
        # NaN or inf on either side is a failure, also where both sides agree on it: a model that
        # outputs NaN is broken whatever the runtime.
        finite = np.isfinite(got[:, c]) & np.isfinite(ref[:, c])
        good = finite & np.isclose(got[:, c], ref[:, c], rtol=rtol, atol=atol, equal_nan=False)
        if not good.all():
            ok = False
            i = int(np.argmin(good))
            worst[name] = {"sample": i % len(batch), "torch": float(ref[i, c]), "onnx": float(got[i, c])}
    return Parity(len(batch), [len(batch), 1], diffs, bounds, ok, worst)
