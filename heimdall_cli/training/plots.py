"""Evaluation plots people in RF localization look at first: error CDF and a map."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def error_cdf(errors_m: dict[str, np.ndarray], path: Path) -> Path:
    """CDF of localization errors (km) for the model and the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for label, errors in errors_m.items():
        e = np.sort(np.asarray(errors)) / 1000.0
        ax.plot(e, np.arange(1, len(e) + 1) / len(e), label=f"{label} (p50 {np.median(e):.1f} km)")
    for q in (0.5, 0.68, 0.95):
        ax.axhline(q, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("error (km)")
    ax.set_ylabel("share of test transmissions")
    ax.set_title("Localization error CDF (test split)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def prediction_map(true_latlon: np.ndarray, pred_latlon: np.ndarray, receivers: list[tuple[str, float, float]],
                   path: Path, limit: int = 300) -> Path:
    """True vs predicted transmitter positions, with the receivers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(limit, len(true_latlon))
    t, p = true_latlon[:n], pred_latlon[:n]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    for (lat1, lon1), (lat2, lon2) in zip(t, p, strict=True):
        ax.plot([lon1, lon2], [lat1, lat2], color="grey", lw=0.4, alpha=0.6)
    ax.scatter(t[:, 1], t[:, 0], s=8, label="true", color="tab:blue")
    ax.scatter(p[:, 1], p[:, 0], s=8, label="predicted", color="tab:orange")
    ax.scatter([r[2] for r in receivers], [r[1] for r in receivers], marker="^", s=60, color="black",
               label="receivers")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_aspect(1 / np.cos(np.radians(np.mean(t[:, 0]))))
    ax.set_title(f"Predicted vs true positions ({n} test samples)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
