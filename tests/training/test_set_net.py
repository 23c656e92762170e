"""The set model takes the receivers as a set: any order, any number, stations it has not seen, moving ones."""

from __future__ import annotations

import numpy as np
import torch

from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.packing import pack
from heimdall_cli.data.samples import Samples
from heimdall_cli.training.outputs import MixtureOutput
from heimdall_cli.training.set_net import SetLocalizationNet

ORIGIN = (40.765, -111.84)


def _samples(n: int, s: int, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    out = Samples.empty(n, s, 0, 0, len(SCALARS))
    out.scalars[..., SCALARS.index("power_db")] = rng.uniform(-100, -40, (n, s))
    out.scalars[..., SCALARS.index("present")] = 1.0
    out.scalars[..., 1:4] = np.nan  # power only: noise, SNR and offset unknown
    out.rx_latlon[...] = np.stack([ORIGIN[0] + rng.uniform(-0.01, 0.01, (n, s)),
                                   ORIGIN[1] + rng.uniform(-0.01, 0.01, (n, s))], axis=-1)
    out.rx_mask[...] = True
    return out


def _net() -> SetLocalizationNet:
    torch.manual_seed(0)
    anchors = np.random.default_rng(1).uniform(-1.5, 1.5, (16, 2))
    return SetLocalizationNet(None, 0, 0, ORIGIN, output=MixtureOutput(anchors, 1.0)).eval()


def test_order_and_count_of_receivers_do_not_matter():
    net, x = _net(), torch.from_numpy(pack(_samples(4, 6)))
    with torch.no_grad():
        mu, sigma = net(x)
        mu_p, sigma_p = net(x[:, torch.tensor([3, 1, 5, 0, 2, 4])])
        # two absent receivers appended (mask 0, NaN everywhere else) change nothing
        absent = torch.full((4, 2, x.shape[2]), float("nan"))
        absent[..., -1] = 0.0
        mu_a, _ = net(torch.cat([x, absent], dim=1))
    torch.testing.assert_close(mu, mu_p)
    torch.testing.assert_close(sigma, sigma_p)
    torch.testing.assert_close(mu, mu_a)
    assert torch.isfinite(mu).all() and (sigma > 0).all()


def test_a_new_or_moved_receiver_changes_the_answer():
    net, s = _net(), _samples(2, 5)
    with torch.no_grad():
        before, _ = net(torch.from_numpy(pack(s)))
        s.rx_latlon[:, 0] += 0.005  # the first receiver moved about 500 m north-east
        moved, _ = net(torch.from_numpy(pack(s)))
        more = _samples(2, 7)
        more.rx_latlon[:, :5], more.scalars[:, :5] = s.rx_latlon, s.scalars
        added, _ = net(torch.from_numpy(pack(more)))
    assert (moved - before).abs().max() > 1e-6  # km; an untrained net: any change shows the input is read
    assert (added - moved).abs().max() > 1e-6  # km; an untrained net: any change shows the input is read
