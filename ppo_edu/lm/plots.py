"""Plots for lesson 5; each takes the history or arrays the training functions return."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np

from ppo_edu.lm.bradley_terry import score_array
from ppo_edu.lm.data import validate_ratings

_ROWS = 1024  # accuracy_by_gap compares this many texts against all at a time


def _smooth(values, window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_sft_history(history: list[dict], ax=None, window: int = 5):
    """Training loss per step (raw and smoothed) and held-out perplexity where measured."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    ax.plot(steps, losses, alpha=0.3, color="C0", label="train loss (per step)")
    smooth = _smooth(losses, window)
    ax.plot(steps[len(steps) - len(smooth):], smooth, color="C0", label=f"train loss ({window}-step mean)")
    ax.set_xlabel("SFT step")
    ax.set_ylabel("cross-entropy (nats / token)")
    handles = ax.get_lines()
    evals = [(h["step"], h["eval_ppl"]) for h in history if "eval_ppl" in h]
    if evals:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*evals), "o-", color="C3", label="held-out perplexity")
        ax2.set_ylabel("held-out perplexity", color="C3")
    ax.legend(handles=handles, loc="upper right", fontsize=8)  # one legend for both axes
    return ax


def plot_rm_history(history: list[dict], baseline: float | None = None, window: int = 5):
    """Bradley-Terry loss and in-batch pairwise accuracy per step; held-out accuracy where measured."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    rows = [h for h in history if "loss" in h]
    steps = [h["step"] for h in rows]
    for ax, key, label in [(ax1, "loss", "Bradley-Terry loss"), (ax2, "batch_accuracy", "pairwise accuracy")]:
        values = [h[key] for h in rows]
        ax.plot(steps, values, alpha=0.3, color="C0")
        smooth = _smooth(values, window)
        ax.plot(steps[len(steps) - len(smooth):], smooth, color="C0", label="train (in-batch pairs)")
        ax.set_xlabel("reward-model step")
        ax.set_ylabel(label)
    ax1.axhline(np.log(2), color="gray", ls=":", label="log 2 (chance)")
    ax2.axhline(0.5, color="gray", ls=":", label="chance")
    evals = [(h["step"], h["eval_accuracy"]) for h in history if "eval_accuracy" in h]
    if evals:
        ax2.plot(*zip(*evals), "o-", color="C3", label="held-out pairs")
    if baseline is not None:
        ax2.axhline(baseline, color="C2", ls="--", label="VADER (held-out)")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_scores_vs_ratings(ratings, scorers: dict[str, np.ndarray], title: str = "held-out snippets"):
    """One scatter per scorer: its score against the mean human rating, with Pearson r."""
    ratings = validate_ratings(ratings)
    fig, axes = plt.subplots(1, len(scorers), figsize=(4.5 * len(scorers), 3.6), squeeze=False)
    for ax, (name, scores) in zip(axes[0], scorers.items()):
        scores = score_array(scores, name)
        if scores.shape != ratings.shape:
            raise ValueError(f"{name}: scores must have one entry per rating, shape {ratings.shape}; "
                             f"got {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError(f"{name}: scores hold NaN or inf, so Pearson r is undefined")
        ax.scatter(ratings, scores, s=6, alpha=0.4)
        ax.set_xlabel("mean human rating (-4 .. +4)")
        ax.set_ylabel(f"{name} score")
        if np.ptp(scores) == 0:  # a constant scorer: r would print as nan (std() can round to 1e-17)
            ax.set_title(f"{name}: constant scores, r undefined", fontsize=10)
        else:
            ax.set_title(f"{name}: Pearson r = {np.corrcoef(scores, ratings)[0, 1]:.2f}", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_by_gap(ratings, scores, edges=(1.0, 1.5, 2.0, 3.0, 4.0, 8.0)) -> list[tuple[float, float, float, int]]:
    """Pairwise accuracy of ``scores`` on pairs whose rating gap lies in each ``[lo, hi)`` bin.
    ``ratings`` and ``scores`` (N,), one per text (arrays or tensors). Returns ``(lo, hi,
    accuracy, pairs)`` for each bin that holds a pair; a tie in score counts as half right.
    The N x N comparisons are made a block of rows at a time: on all 10,605 snippets the
    peak memory rises by 0.36 GiB (2.8 GiB when they were made at once)."""
    ratings = validate_ratings(ratings)
    scores = score_array(scores)
    if scores.shape != ratings.shape:
        raise ValueError(f"scores must have one entry per rating, shape {ratings.shape}; got {scores.shape}")
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scores[{i}] = {scores[i]} is not finite: a NaN would silently count as a wrong answer")
    bins = list(itertools.pairwise(edges))
    right = np.zeros(len(bins))  # sums of 1, 0.5 and 0: exact in float64, whatever the block size
    count = np.zeros(len(bins), dtype=np.int64)
    for s in range(0, len(ratings), _ROWS):
        gap = ratings[s:s + _ROWS, None] - ratings[None, :]
        diff = scores[s:s + _ROWS, None] - scores[None, :]
        correct = (diff > 0) + 0.5 * (diff == 0)
        for k, (lo, hi) in enumerate(bins):
            mask = (gap >= lo) & (gap < hi)
            right[k] += correct[mask].sum()
            count[k] += int(mask.sum())
    return [(lo, hi, float(right[k] / count[k]), int(count[k])) for k, (lo, hi) in enumerate(bins) if count[k]]


def plot_accuracy_by_gap(ratings, scorers: dict[str, np.ndarray], ax=None):
    """How often each scorer orders a pair like the humans, as a function of the rating gap."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    for name, scores in scorers.items():
        rows = accuracy_by_gap(ratings, scores)
        centers = [(lo + min(hi, 6.0)) / 2 for lo, hi, _, _ in rows]
        ax.plot(centers, [acc for _, _, acc, _ in rows], "o-", label=name)
    ax.axhline(0.5, color="gray", ls=":", label="chance")
    ax.set_xlabel("gap between the two snippets' mean human ratings")
    ax.set_ylabel("pairwise accuracy")
    ax.legend(fontsize=8)
    return ax
