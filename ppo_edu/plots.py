"""Plot helpers for trainer histories (lists of dicts, one per update).

``plot_history`` draws the usual PPO dashboard for one run; ``plot_runs`` compares groups
of runs (e.g. an ablation over seeds) on one metric with the median and the min-max band.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

DASHBOARD = (
    ("episode_return", "episode return (training)"),
    ("approx_kl", "approx KL(pi_old || pi)"),
    ("clip_fraction", "clip fraction"),
    ("entropy", "entropy S[pi]"),
    ("value_loss", "value loss"),
    ("explained_variance", "explained variance"),
)


def smoothed(values: Sequence[float], window: int = 10) -> np.ndarray:
    """Trailing moving average that skips NaNs (updates where no episode ended)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an integer >= 1 (1 = no smoothing), got {window!r}")
    values = np.asarray(values, dtype=float)
    out = np.full_like(values, np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        chunk = chunk[~np.isnan(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def column(history: list[dict], key: str) -> np.ndarray:
    """One metric of a history as an array (NaN where an update did not record it)."""
    return np.array([record.get(key, np.nan) for record in history], dtype=float)


def _require_keys(history: list[dict], *keys: str) -> None:
    """A key that no record has is a typo (or the wrong history), not a metric to draw empty."""
    if isinstance(history, dict) or not isinstance(history, (list, tuple)):
        raise TypeError(f"the history must be a list of dicts, one per update, got {type(history).__name__}")
    if not history:
        raise ValueError("the history is empty: nothing to plot")
    stray = next((record for record in history if not isinstance(record, dict)), None)
    if stray is not None:  # train_ppo's whole result, (agent, history): was "'ActorCritic' ... no attribute 'keys'"
        raise TypeError(f"the history must be a list of dicts, one per update (train_ppo's "
                        f"result.history), got a {type(history).__name__} holding a {type(stray).__name__}")
    recorded = set().union(*(record.keys() for record in history))
    for key in keys:
        if key not in recorded:
            raise KeyError(f"no record of the history has {key!r}; it has {sorted(recorded)}")


def plot_history(history: list[dict], keys=DASHBOARD, x: str = "env_steps", smooth: int = 5,
                 axes=None, label: str | None = None, ncols: int = 3):
    """One panel per metric against ``x``; returns the figure. ``keys`` holds metric names
    or (name, title) pairs. Pass ``axes`` to draw another run onto the same panels."""
    import matplotlib.pyplot as plt

    keys = [(k, k) if isinstance(k, str) else k for k in keys]
    _require_keys(history, x, *(key for key, _ in keys))
    if axes is None:
        nrows = -(-len(keys) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows),
                                 squeeze=False, constrained_layout=True)
    axes = np.asarray(axes).reshape(-1)
    fig = axes[0].figure
    xs = column(history, x)
    for ax, (key, title) in zip(axes, keys):
        ys = column(history, key)
        ax.plot(xs, smoothed(ys, smooth), label=label)  # smoothed() refuses a window < 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if label is not None:
        axes[0].legend(fontsize=8)
    return fig


def plot_evaluations(ax, evals: Sequence[tuple[int, float]],
                     label: str = "evaluation (most likely action)"):
    """Draw ``(env_steps, mean)`` evaluations (``EvalTracker.evals``) as dots onto ``ax``,
    e.g. the return panel of :func:`plot_history`; returns ``ax``."""
    if not evals:
        raise ValueError("no evaluations to draw (did the tracker evaluate during training?)")
    steps, means = zip(*evals)
    ax.plot(steps, means, "k.", ms=5, label=label)
    ax.legend(fontsize=8)
    return ax


def plot_runs(runs: dict[str, list[list[dict]]], key: str = "episode_return",
              x: str = "env_steps", smooth: int = 5, ax=None, title: str | None = None):
    """Median (line) and min-max over seeds (band) of ``key`` for each named group of runs."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    for name, histories in runs.items():
        if not histories or not all(histories):
            raise ValueError(f"group {name!r} has no runs, or a run with no history, to plot")
        if isinstance(histories, (list, tuple)) and isinstance(histories[0], dict):
            raise TypeError(f"group {name!r} holds one history (a list of dicts); a group is a list "
                            "of histories, one per run: wrap it in a list")
        for h in histories:
            _require_keys(h, x, key)
        length = min(len(h) for h in histories)
        xs = column(histories[0][:length], x)
        for i, h in enumerate(histories[1:], start=1):  # the band is taken across runs, row by row
            if not np.array_equal(column(h[:length], x), xs):
                raise ValueError(f"group {name!r}: run {i} records {x} at other points than run 0 "
                                 "(different settings?), so their rows cannot be compared")
        ys = np.stack([smoothed(column(h[:length], key), smooth) for h in histories])
        with warnings.catch_warnings():  # all-NaN columns (no episode ended yet) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(ys, axis=0)
            low, high = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
        line, = ax.plot(xs, median, label=f"{name} (n={len(histories)})")
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title or key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
