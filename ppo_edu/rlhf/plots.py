"""Plots for lesson 6; each takes the history ``RLHFTrainer.train`` returns."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ppo_edu.plots import smoothed

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


# recorded only when the trainer was given a judge: left out quietly when no run has it
OPTIONAL = ("judge",)

# set by the controller, not measured: drawn as it was, since a trailing mean would lag behind the
# coefficient the step actually used
UNSMOOTHED = ("kl_coef",)


def plot_history(histories, keys=("score", "kl", "judge", "kl_coef"), window: int = 5,
                 ncols: int = 2, title: str | None = None):
    """One panel per statistic, one line per run. ``histories``: a history (list of dicts)
    or ``{"run name": history, ...}``. Lines are ``window``-step trailing means that skip NaN
    (the explained variance is NaN on a step whose returns do not vary), over the raw values
    drawn faintly; the KL coefficient, which the controller sets, is drawn as it was."""
    if isinstance(histories, list):
        histories = {"PPO": histories}
    recorded = {k for h in histories.values() if h for k in h[0]}
    missing = [k for k in keys if k not in recorded and k not in OPTIONAL]
    if missing:
        raise KeyError(f"no history records {missing}; they record {sorted(recorded)}")
    asked, keys = list(keys), [k for k in keys if k in recorded]
    if not keys:
        raise ValueError(f"nothing to plot: none of {asked} is recorded")
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, (name, history) in enumerate(histories.items()):
            steps = [h["step"] for h in history]
            values = [h.get(key, np.nan) for h in history]
            if key in UNSMOOTHED:
                ax.plot(steps, values, color=f"C{i}", label=name)
                continue
            ax.plot(steps, values, color=f"C{i}", alpha=0.25)
            ax.plot(steps, smoothed(values, window), color=f"C{i}", label=name)
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
