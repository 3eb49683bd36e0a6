"""Plots for lesson 6; each takes the history ``RLHFTrainer.train`` returns."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

LABELS = {
    "score": "reward-model score",
    "judge": "VADER compound (held-out judge)",
    "kl": "KL to reference (nats / response)",
    "kl_coef": "KL coefficient beta",
    "entropy": "entropy (nats / token)",
    "response_length": "response length (tokens)",
    "clip_fraction": "clip fraction",
    "approx_kl": "approx KL(pi_old || pi) per token",
    "value_loss": "value loss",
    "explained_variance": "explained variance of V",
}


def _smooth(values, window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_history(histories, keys=("score", "kl", "judge", "kl_coef"), window: int = 5,
                 ncols: int = 2, title: str | None = None):
    """One panel per statistic, one line per run. ``histories``: a history (list of dicts)
    or ``{"run name": history, ...}``. Lines are ``window``-step running means."""
    if isinstance(histories, list):
        histories = {"PPO": histories}
    keys = [k for k in keys if any(k in h[0] for h in histories.values() if h)]
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, (name, history) in enumerate(histories.items()):
            steps = [h["step"] for h in history]
            values = [h.get(key, np.nan) for h in history]
            ax.plot(steps, values, color=f"C{i}", alpha=0.25)
            smooth = _smooth(values, window)
            ax.plot(steps[len(steps) - len(smooth):], smooth, color=f"C{i}", label=name)
        ax.set_title(LABELS.get(key, key), fontsize=10)
        ax.set_xlabel("PPO step")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if len(histories) > 1:
        axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
