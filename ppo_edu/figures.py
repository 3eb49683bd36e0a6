"""Figures for the course: PPO paper Figures 1 and 2, and the many-epochs experiment.

``python -m ppo_edu.figures`` (or ``make figures``) regenerates ``assets/l_clip.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

if __name__ == "__main__":  # writing files from a terminal: no display needed
    matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def clip_term(ratio: np.ndarray, advantage: float, epsilon: float) -> np.ndarray:
    """One term of L^CLIP, min(r A, clip(r, 1 - eps, 1 + eps) A), as a function of r."""
    return np.minimum(ratio * advantage, np.clip(ratio, 1 - epsilon, 1 + epsilon) * advantage)


def plot_clip_terms(epsilon: float = 0.2, axes=None):
    """PPO paper Figure 1: one term of L^CLIP against r for A > 0 (left) and A < 0 (right).

    The red dot marks r = 1, where optimisation starts. Where the line is flat the term
    has zero gradient: the sample has already moved the policy as far as it may.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=False)
    else:
        fig = axes[0].figure
    r = np.linspace(0, 2, 401)
    for ax, adv, label in ((axes[0], 1.0, "A > 0"), (axes[1], -1.0, "A < 0")):
        ax.plot(r, clip_term(r, adv, epsilon), color="tab:blue", lw=2, label=r"$L^{CLIP}$ term")
        ax.plot(r, r * adv, color="gray", ls=":", lw=1, label=r"$r A$ ($L^{CPI}$ term)")
        bound = 1 + epsilon if adv > 0 else 1 - epsilon
        ax.axvline(bound, color="tab:orange", ls="--", lw=1)
        ax.annotate(f"1{'+' if adv > 0 else '−'}ε", (bound, clip_term(np.array([bound]), adv, epsilon)[0]),
                    textcoords="offset points", xytext=(4, -14 if adv > 0 else 6), color="tab:orange")
        ax.plot([1], [adv], "o", color="tab:red")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{label}  (ε = {epsilon:g})")
        ax.set_xlabel(r"$r_t(\theta)$")
        ax.set_xlim(0, 2)
    axes[0].set_ylabel(r"$\min(r_t A_t,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon) A_t)$")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def save_l_clip(path: Path | str = ASSETS / "l_clip.png", epsilon: float = 0.2) -> Path:
    """Write Figure 1 to ``path`` (the figure the seed note, ``../shared/seed/``, and the README
    show as ``assets/l_clip.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_clip_terms(epsilon)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_surrogate_epochs(histories: dict[str, list[dict]], kl_budget: float | None = 0.02):
    """KL(pi_old || pi), evaluated return and clip fraction per epoch, one line per objective."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (name, history) in enumerate(histories.items()):
        color = f"C{i}"  # one colour per run in every panel, also when a run has no evaluations
        epochs = [row["epoch"] for row in history]
        axes[0].plot(epochs, [max(row["kl"], 1e-6) for row in history], marker=".", label=name, color=color)
        evals = [(row["epoch"], row["eval_return"]) for row in history if "eval_return" in row]
        if evals:
            axes[1].plot(*zip(*evals), marker="o", label=name, color=color)
        axes[2].plot(epochs, [row["clip_fraction"] for row in history], marker=".", label=name, color=color)
    if kl_budget is not None:
        axes[0].axhline(kl_budget, color="gray", ls="--", lw=1, label=f"typical PPO step ({kl_budget})")
    axes[0].set_yscale("log")
    axes[0].set_title(r"KL($\pi_{old}\,\|\,\pi_\theta$) on the batch (0 drawn at 1e-6)")
    axes[1].set_title("evaluated return (fresh episodes)")
    axes[2].set_title(r"clip fraction ($|r_t - 1| > \epsilon$)")
    if not axes[1].lines:  # say so, rather than leave an empty panel (and an empty legend)
        axes[1].text(0.5, 0.5, "no run recorded eval_return", ha="center", va="center",
                     transform=axes[1].transAxes, color="gray")
    for ax in axes:
        ax.set_xlabel("epochs on the same batch")
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_objective_along_line(line: dict[str, list[float]], epsilon: float = 0.2):
    """PPO paper Figure 2: surrogates and KL along theta_old + alpha (theta_new - theta_old)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    alpha = line["alpha"]
    ax.plot(alpha, line["cpi"], label=r"$L^{CPI}$")
    ax.plot(alpha, line["clip"], label=rf"$L^{{CLIP}}$ (ε = {epsilon:g})")
    ax.plot(alpha, line["kl"], label=r"$\hat E_t[KL(\pi_{old}\,\|\,\pi)]$")
    if "clip_term" in line:  # the paper's fourth curve: the clipped term alone, without the min
        ax.plot(alpha, line["clip_term"], ls="--", color="C3",
                label=r"$\hat E_t[\mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\hat A_t]$")
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel(r"interpolation factor $\alpha$  ($\theta = \theta_{old} + \alpha(\theta_{new} - \theta_{old})$)")
    ax.set_title("Surrogate objectives along the update direction")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_seed_sweep(rows: list[dict]):
    """Return before and after the epochs, one line per seed, one panel per objective
    (the rows of :func:`ppo_edu.experiments.surrogate_seed_sweep`); the black line is the mean."""
    names = list(dict.fromkeys(row["objective"] for row in rows))
    if not names:
        raise ValueError("no rows to plot: the sweep returned nothing")
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), sharey=True, squeeze=False)
    by_objective = {name: [row for row in rows if row["objective"] == name] for name in names}
    for ax, name in zip(axes[0], names):
        mine = by_objective[name]
        for row in mine:
            ax.plot([0, 1], [row["return_before"], row["return_after"]], marker="o", color="C0", alpha=0.5)
        mean = [np.mean([row[k] for row in mine]) for k in ("return_before", "return_after")]
        ax.plot([0, 1], mean, color="black", lw=2.5, label=f"mean of {len(mine)} seeds")
        ax.set_xticks([0, 1], ["before", "after the epochs"])
        ax.set_xlim(-0.2, 1.35)
        ax.set_title(name)
        ax.legend(fontsize=8, loc="lower left")
    axes[0][0].set_ylabel("evaluated return")
    fig.tight_layout()
    # the labels go on last, once the axes have their final size: seeds that end at about the
    # same return get their labels spread apart (a thin line points to each one's end)
    for ax, name in zip(axes[0], names):
        ends = [row["return_after"] for row in by_objective[name]]
        gap = _label_gap(ax, points=8.5)
        bottom, top = ax.get_ylim()
        heights = spread_labels(ends, gap, low=bottom + gap / 2, high=top - gap / 2)
        for row, end, height in zip(by_objective[name], ends, heights):
            ax.annotate(f"seed {row['seed']}", (1, end), xytext=(1.05, height), textcoords="data",
                        fontsize=7, va="center",
                        arrowprops=dict(arrowstyle="-", color="gray", lw=0.5, shrinkA=0, shrinkB=2))
    return fig


def _label_gap(ax, points: float) -> float:
    """``points`` (a text height) in the data units of ``ax``'s y axis, at its current size."""
    bottom, top = ax.get_ylim()
    height = ax.get_window_extent().height * 72 / ax.figure.dpi  # pixels -> points
    return points * (top - bottom) / height


def spread_labels(values, gap: float, low: float = -np.inf, high: float = np.inf) -> np.ndarray:
    """Heights for labels at ``values`` such that no two are closer than ``gap``: labels that
    would overlap are grouped, and each group is spaced ``gap`` apart around the mean of its
    values (groups that then touch merge). A label's order is kept; one with room stays put.
    Labels pushed below ``low`` or above ``high`` (the axes' edges) are moved back inside, and
    their neighbours with them, as far as there is room."""
    values = np.asarray(values, dtype=float)
    groups: list[list[int]] = []  # indices into values, in increasing value

    def placed(group):
        centre = values[group].mean()
        return centre + (np.arange(len(group)) - (len(group) - 1) / 2) * gap

    for i in np.argsort(values, kind="stable"):
        groups.append([int(i)])
        while len(groups) > 1 and placed(groups[-1])[0] - placed(groups[-2])[-1] < gap:
            groups[-2:] = [groups[-2] + groups[-1]]
    heights = np.empty_like(values)
    for group in groups:
        heights[group] = placed(group)
    order = np.argsort(values, kind="stable")
    ordered = heights[order]
    for i in range(len(ordered)):  # up from the bottom edge
        ordered[i] = max(ordered[i], low if i == 0 else ordered[i - 1] + gap)
    for i in reversed(range(len(ordered))):  # down from the top edge
        ordered[i] = min(ordered[i], high if i == len(ordered) - 1 else ordered[i + 1] - gap)
    heights[order] = ordered
    return heights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the course figures in assets/.")
    parser.add_argument("--out", default=str(ASSETS), help="output folder (default: assets/)")
    args = parser.parse_args(argv)
    path = save_l_clip(Path(args.out) / "l_clip.png")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
