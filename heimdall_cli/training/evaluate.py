"""After training: test the best checkpoint, score the baselines, log the plots and the deployable model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from heimdall_cli.training.prepare import Prepared

SIM_TO_REAL_SEED_OFFSET = 1_000_003  # other transmissions too, not only another terrain


def evaluate(prep: Prepared) -> tuple[dict[str, float], str | None]:
    """Test the best checkpoint, score the references and the sim-to-real check, log the plots and the model.

    Returns the test metrics (as logged) and the logged model's ``runs:/`` URI (None when untracked).
    """
    from heimdall_cli.data.baselines import errors_m, summary
    from heimdall_cli.data.reference import reference_estimates, skipped

    parts, splits = prep.parts, prep.splits
    trainer = parts.trainer
    best = parts.checkpoint.best_model_path
    if best and Path(best).is_file():
        import torch

        prep.model.load_state_dict(torch.load(best, map_location=prep.model.device, weights_only=False)["state_dict"])
    scale = _calibrate(prep)
    metrics = trainer.test(prep.model, prep.loaders["test"], verbose=False)
    test = {k: float(v) for k, v in (metrics[0] if metrics else {}).items()}
    if not trainer.is_global_zero:
        return test, None
    pred_latlon = _predict_latlon(prep, prep.loaders["test"])
    synthetic = splits.world is not None
    references = reference_estimates(splits.test, splits.world or prep.settings.data.world, splits.features,
                                     prep.settings.data.features, synthetic=synthetic, train=splits.train,
                                     val=splits.val)
    for reason in skipped(splits.test):
        prep.view.message(f"Baselines skipped: {reason}.")
        if prep.tracker is not None:
            prep.tracker.set_tags({"baselines_skipped": reason})
    true = splits.test.tx_latlon
    extra = {f"test/baseline_{name}_error_m_{stat}": value for name, pred in references.items()
             for stat, value in summary(errors_m(pred, true)).items() if stat != "p68"}
    extra["test/sigma_scale"] = scale
    extra.update(_sim_to_real(prep, float(np.median(errors_m(pred_latlon, true)))))
    parts.logger.log_metrics(extra, step=trainer.global_step)
    test.update(extra)
    if prep.tracker is None or parts.uploader is None:
        return test, None
    _log_plots(prep, pred_latlon, references)
    return test, _log_model(prep)


def _calibrate(prep: Prepared) -> float:
    """Scale the model's σ so that its 68 % region holds 68 % of the validation labels; the factor applied."""
    import torch

    from heimdall_cli.training.outputs import calibrate

    model = prep.model.eval()
    mus, sigmas, ys = [], [], []
    with torch.no_grad():
        for batch in prep.loaders["val"]:
            mu, sigma = model(batch["receivers"].to(model.device))
            mus.append(mu.float().cpu())
            sigmas.append(sigma.float().cpu())
            ys.append(batch["y"].float())
    if not mus:
        return 1.0
    factor = calibrate(torch.cat(mus), torch.cat(sigmas), torch.cat(ys))
    model.net.output.sigma_scale.mul_(factor)
    return float(model.net.output.sigma_scale)


def _predict_latlon(prep: Prepared, loader: Any) -> np.ndarray:
    import torch

    model = prep.model.eval()
    outs = []
    with torch.no_grad():
        for batch in loader:
            mu, _ = model(batch["receivers"].to(model.device))
            outs.append(mu.float().cpu().numpy())
    return prep.splits.to_latlon(np.concatenate(outs))


def _sim_to_real(prep: Prepared, test_p50: float) -> dict[str, float]:
    """The model on the same network over another terrain (field_seed + 1): the error and its ratio to test."""
    from torch.utils.data import DataLoader

    from heimdall_cli.data.baselines import errors_m
    from heimdall_cli.data.dataset import RFDataset
    from heimdall_cli.data.synth import generate

    splits, data = prep.splits, prep.settings.data
    world = splits.world
    if splits.identity.kind != "synthetic" or world is None or world.version != 2 or world.random_placement:
        return {}
    other = world.model_copy(update={"field_seed": world.field_seed + 1})
    samples = generate(len(splits.test), data.seed + SIM_TO_REAL_SEED_OFFSET, other, data.features)
    split = RFDataset.of(samples, splits.origin)
    pred = _predict_latlon(prep, DataLoader(split, batch_size=prep.settings.training.batch_size))
    p50 = float(np.median(errors_m(pred, samples.tx_latlon)))
    return {"test/sim2real_error_m_p50": p50, "test/sim2real_gap": p50 / test_p50 if test_p50 > 0 else float("nan")}


def _log_plots(prep: Prepared, pred_latlon: np.ndarray, baselines: dict[str, np.ndarray]) -> None:
    from heimdall_cli.data.baselines import errors_m
    from heimdall_cli.data.receivers import placed
    from heimdall_cli.training.plots import error_cdf, prediction_map

    true = prep.splits.test.tx_latlon
    folder = prep.parts.run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    curves = {"model": errors_m(pred_latlon, true)}
    curves.update({f"{k} baseline": errors_m(v, true) for k, v in baselines.items()})
    receivers = [(r.name, r.lat, r.lon) for r in prep.splits.receivers if placed(r) and (r.lat or r.lon)]
    for path in (error_cdf(curves, folder / "error_cdf.png"),
                 prediction_map(true, pred_latlon, receivers, folder / "prediction_map.png")):
        prep.parts.uploader.upload(path, "plots")


def _log_model(prep: Prepared) -> str:
    import torch

    from heimdall_cli.data.packing import TAIL
    from heimdall_cli.data.receivers import receivers_to_json
    from heimdall_cli.export.interface import INPUT_LAYOUT, OUTPUT_COLUMNS
    from heimdall_cli.tracking.models import save_pytorch_model
    from heimdall_cli.training.deployed import DeployedLocalizer

    splits = prep.splits
    deployed = DeployedLocalizer(prep.model.net.cpu().eval(), splits.origin, splits.label_scale_m).eval()
    raw = splits.test.packed(limit=2)
    with torch.no_grad():
        deployed(torch.from_numpy(raw))
    folder = prep.parts.run_dir / "model"
    shutil.rmtree(folder, ignore_errors=True)
    # a set model takes any number of receivers: its receiver axis is dynamic
    dynamic = (1,) if prep.settings.training.architecture == "set" else ()
    save_pytorch_model(deployed, folder, input_example=raw, dynamic_axes=dynamic, metadata={
        "outputs": list(OUTPUT_COLUMNS), "input": INPUT_LAYOUT, "receivers": receivers_to_json(splits.receivers),
        "slots": splits.slots, "bands": splits.layout.bands, "frames": splits.layout.frames,
        "input_tail": TAIL, "architecture": prep.settings.training.architecture,
        "features": splits.features, "origin": list(splits.origin)})
    # Through the upload queue, like checkpoints: it waits out an outage instead of failing the run.
    prep.parts.uploader.upload(folder, "model", snapshot=False)
    sync = prep.parts.checkpoint_sync
    if sync is not None and sync.models is not None:
        trainer = prep.parts.trainer
        sync.models.log_final(folder, step=trainer.global_step, epoch=max(trainer.current_epoch - 1, 0),
                              from_checkpoint=prep.parts.checkpoint.best_model_path or None)
    return f"runs:/{prep.tracker.run_id}/model"
