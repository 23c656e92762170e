"""After training: test the best checkpoint, score the baselines, log the plots and the deployable model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.training.prepare import Prepared


def evaluate(prep: Prepared) -> tuple[dict[str, float], str | None]:
    """Test the best checkpoint, score the baselines, log the plots and the model.

    Returns the test metrics (as logged) and the logged model's ``runs:/`` URI (None when untracked).
    """
    from heimdall_cli.data.baselines import errors_m

    parts, splits = prep.parts, prep.splits
    trainer = parts.trainer
    best = parts.checkpoint.best_model_path
    ckpt = "best" if best and Path(best).is_file() else None
    metrics = trainer.test(prep.model, prep.loaders["test"], ckpt_path=ckpt, verbose=False)
    test = {k: float(v) for k, v in (metrics[0] if metrics else {}).items()}
    if not trainer.is_global_zero:
        return test, None
    pred_latlon = _predict_latlon(prep)
    baselines = _baselines(splits)
    true = splits.test.tx_latlon
    extra = {f"test/baseline_{name}_error_m_p50": float(np.median(errors_m(pred, true)))
             for name, pred in baselines.items()}
    parts.logger.log_metrics(extra, step=trainer.global_step)
    test.update(extra)
    if prep.tracker is None or parts.uploader is None:
        return test, None
    _log_plots(prep, pred_latlon, baselines)
    return test, _log_model(prep)


def _predict_latlon(prep: Prepared) -> np.ndarray:
    import torch

    model = prep.model.eval()
    outs = []
    with torch.no_grad():
        for batch in prep.loaders["test"]:
            mu, _ = model(batch["x"].to(model.device))
            outs.append(mu.float().cpu().numpy())
    return prep.splits.to_latlon(np.concatenate(outs))


def _baselines(splits: Splits) -> dict[str, np.ndarray]:
    from heimdall_cli.data.baselines import centre_baseline, rssi_multilateration

    n = len(splits.test)
    out = {"centre": centre_baseline(n, splits.receivers)}
    if splits.world is not None:
        out["rssi"] = rssi_multilateration(splits.test.rx_power_dbm, splits.world, splits.receivers)
    return out


def _log_plots(prep: Prepared, pred_latlon: np.ndarray, baselines: dict[str, np.ndarray]) -> None:
    from heimdall_cli.data.baselines import errors_m
    from heimdall_cli.training.plots import error_cdf, prediction_map

    true = prep.splits.test.tx_latlon
    folder = prep.parts.run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    curves = {"model": errors_m(pred_latlon, true)}
    curves.update({f"{k} baseline": errors_m(v, true) for k, v in baselines.items()})
    receivers = [(r.name, r.lat, r.lon) for r in prep.splits.receivers]
    for path in (error_cdf(curves, folder / "error_cdf.png"),
                 prediction_map(true, pred_latlon, receivers, folder / "prediction_map.png")):
        prep.parts.uploader.upload(path, "plots")


def _log_model(prep: Prepared) -> str:
    import torch

    from heimdall_cli.export.interface import INPUT_LAYOUT, OUTPUT_COLUMNS
    from heimdall_cli.tracking.models import save_pytorch_model
    from heimdall_cli.training.deployed import DeployedLocalizer

    splits = prep.splits
    deployed = DeployedLocalizer(prep.model.net.cpu().eval(), splits.norm.mean, splits.norm.std, splits.origin,
                                 splits.label_scale_m).eval()
    raw = np.stack([splits.test.store.spec(int(i)) for i in splits.test.indices[:2]]).astype(np.float32)
    with torch.no_grad():
        deployed(torch.from_numpy(raw))
    folder = prep.parts.run_dir / "model"
    shutil.rmtree(folder, ignore_errors=True)
    save_pytorch_model(deployed, folder, input_example=raw,
                       metadata={"outputs": list(OUTPUT_COLUMNS), "input": INPUT_LAYOUT,
                                 "receivers": [r.name for r in splits.receivers]})
    # Through the upload queue, like checkpoints: it waits out an outage instead of failing the run.
    prep.parts.uploader.upload(folder, "model", snapshot=False)
    return f"runs:/{prep.tracker.run_id}/model"
