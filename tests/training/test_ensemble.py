"""A deep ensemble is one module with the interface of one network: mean position, combined σ, members' own losses."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from heimdall_cli.data.packing import pack
from heimdall_cli.training.deployed import DeployedLocalizer
from heimdall_cli.training.model import LocalizationLitModule
from tests.training.test_set_net import ORIGIN, _samples


def _module(ensemble: int, architecture: str = "slots") -> LocalizationLitModule:
    torch.manual_seed(0)
    anchors = np.random.default_rng(1).uniform(-1.5, 1.5, (8, 2)).tolist()
    return LocalizationLitModule("test_resnet", slots=6, bands=0, frames=0, origin=ORIGIN, architecture=architecture,
                                 extent_km=1.0, anchors_km=anchors, ensemble=ensemble, head_hidden=32).eval()


def test_prediction_is_the_members_mean_and_sigma_their_spread():
    model, x = _module(3), torch.from_numpy(pack(_samples(5, 6)))
    members = model.net.members
    with torch.no_grad():
        mu, sigma = model(x)
        each = [m(x) for m in members]
    mus = torch.stack([m for m, _ in each])
    sigmas = torch.stack([s for _, s in each])
    torch.testing.assert_close(mu, mus.mean(0))
    torch.testing.assert_close(sigma, (sigmas.square() + (mus - mus.mean(0)).square()).mean(0).sqrt())
    assert not torch.allclose(mus[0], mus[1])  # independently initialised members disagree
    assert (sigma >= sigmas.min(0).values).all()


def test_each_member_is_trained_by_its_own_loss():
    model, x = _module(2), torch.from_numpy(pack(_samples(8, 6)))
    y = torch.zeros(8, 2)
    raw = model.net.raw(x)
    total = model.net.output.nll(raw, y)
    a, b = model.net.output.split(raw)
    torch.testing.assert_close(total, model.net.members[0].output.nll(a, y) + model.net.members[1].output.nll(b, y))
    total.backward()
    for member in model.net.members:  # every member gets gradient
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters())


def test_calibration_scales_the_combined_sigma_only():
    model, x = _module(2), torch.from_numpy(pack(_samples(4, 6)))
    with torch.no_grad():
        mu, sigma = model(x)
        model.net.output.sigma_scale.mul_(2.0)
        mu2, sigma2 = model(x)
    torch.testing.assert_close(mu, mu2)
    torch.testing.assert_close(sigma2, 2.0 * sigma)


def test_an_ensemble_exports_to_onnx_as_one_model():
    """The whole ensemble is one ONNX graph, within the export's own parity tolerance of torch."""
    from heimdall_cli.export.onnx import to_onnx
    from heimdall_cli.export.parity import check_parity

    deployed = DeployedLocalizer(_module(3).net, ORIGIN, 1000.0).eval()
    x = pack(_samples(5, 6))
    model = to_onnx(deployed, x)
    assert check_parity(deployed, model, x, ["lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m"]).ok
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"receivers": x})[1]
    with torch.no_grad():
        _, sigma = deployed.net(torch.from_numpy(x))
    np.testing.assert_allclose(got[:, :2], sigma.numpy() * 1000.0, rtol=1e-3)  # σ of the whole ensemble, metres
