"""Figures for the course: PPO paper Figures 1 and 2, the many-epochs experiment, and the
README's results.

``python -m ppo_edu.figures`` (or ``make figures``) regenerates ``assets/``: ``l_clip.png``
(PPO paper Figure 1) and the three results the README shows, each one a lesson's own run at
its ``full`` settings on seed 0 (:data:`LESSON2`, :data:`LESSON4`, :data:`LESSON6`; a test
checks them against the lessons' settings cells): ``many_epochs.png`` (lesson 2, L^CPI
against L^CLIP for 40 epochs on one batch), ``cartpole.png`` (lesson 4, PPO's learning
curve) and ``rlhf.png`` (lesson 6, PPO on the tiny GPT-2 with the adaptive KL penalty and
with none). About five minutes on one CPU core, most of it lesson 6's 240 PPO steps.
``--quick`` draws every figure from a few steps of the same code (the test suite's check
that each one is made here), ``--only`` picks figures by name.
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


# The README's results: each a lesson's own run, at its `full` settings on seed 0 (a test reads the
# lessons' settings cells and compares). The figures' files are named after what they show.
LESSON2 = dict(seed=0, pg_iterations=25, batch_envs=8, batch_steps=256, epochs=40, lr=3e-3,
               minibatch_size=256, epsilon=0.2, eval_episodes=32, eval_every=1)
"""Lesson 2's many-epochs experiment: L^CPI and L^CLIP on one CartPole batch."""
LESSON4 = dict(seed=0, eval_every=2048)
"""Lesson 4's run: ``PPOConfig(seed=0)``, evaluated every 2,048 env steps by an ``EvalTracker``."""
LESSON6 = dict(seed=0, batch_size=32, mini_batch_size=8, ppo_epochs=4, learning_rate=5e-5,
               max_new_tokens=20, init_kl_coef=0.2, target_kl=4.0, kl_horizon=300, ppo_steps=120,
               overopt_steps=120, eval_prompts=256)
"""Lesson 6's runs, sections 6 and 8: PPO with the adaptive KL penalty, and with beta = 0."""

# --quick: the same code on a few steps, to check that each figure is made here (seconds, not minutes).
# Lessons 2 and 6 run torch on one thread, as the lessons do (ppo_edu.ppo.torch_threads; lesson 4's
# PPOConfig sets it itself): their numbers were measured so, and another count rounds differently.
QUICK = {
    "many_epochs": dict(pg_iterations=1, batch_steps=32, epochs=2, eval_episodes=1),
    "cartpole": dict(total_timesteps=512, eval_every=256),
    "rlhf": dict(batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=4, ppo_steps=2,
                 overopt_steps=2),
}


def save_many_epochs(path: Path | str, quick: bool = False) -> Path:
    """Lesson 2, section 3: 40 epochs of L^CPI and of L^CLIP on one CartPole batch, from the same
    pi_theta_old (:data:`LESSON2`): the KL to pi_theta_old, the evaluated return, the clip fraction."""
    import torch

    from ppo_edu.agents import ActorCritic
    from ppo_edu.experiments import (clip_objective, collect_batch, cpi_objective, surrogate_epochs,
                                     train_vanilla_pg)
    from ppo_edu.ppo import torch_threads

    s = {**LESSON2, **(QUICK["many_epochs"] if quick else {})}
    with torch_threads(1):
        torch.manual_seed(s["seed"])
        agent_old = ActorCritic(obs_dim=4, n_actions=2)
        train_vanilla_pg(agent_old, iterations=s["pg_iterations"], seed=s["seed"], progress=False)
        batch = collect_batch(agent_old, num_envs=s["batch_envs"], num_steps=s["batch_steps"],
                              seed=s["seed"] + 100)
        runs = {}
        for name, objective in (("L^CPI", cpi_objective), ("L^CLIP", clip_objective(s["epsilon"]))):
            runs[name] = surrogate_epochs(
                agent_old, batch, objective=objective, epochs=s["epochs"], lr=s["lr"],
                minibatch_size=s["minibatch_size"], epsilon=s["epsilon"], eval_episodes=s["eval_episodes"],
                eval_every=s["eval_every"], seed=s["seed"], progress=not quick)[1]
    for name, run in runs.items():
        returns = [row["eval_return"] for row in run if "eval_return" in row]
        print(f"{name}: KL after {s['epochs']} epochs {run[-1]['kl']:.4f}, clip fraction "
              f"{run[-1]['clip_fraction']:.2f}, evaluated return {returns[0]:.1f} before, {returns[-1]:.1f} "
              f"after, {min(returns):.1f} at worst")
    fig = plot_surrogate_epochs(runs)
    fig.suptitle(f"Lesson 2: many epochs on one batch, L^CPI against L^CLIP (CartPole, seed {s['seed']})",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def save_cartpole(path: Path | str, quick: bool = False) -> Path:
    """Lesson 4, section 3: PPO on CartPole-v1 (``PPOConfig(seed=0)``, :data:`LESSON4`): the
    tracker's evaluations (20 episodes, the most likely action) as the line, and the return of
    each training episode that ended in a rollout, faintly (a rollout ends few of the long ones)."""
    from ppo_edu.evaluate import EvalTracker
    from ppo_edu.plots import column
    from ppo_edu.ppo import PPOConfig, train_ppo

    s = {**LESSON4, **(QUICK["cartpole"] if quick else {})}
    config = PPOConfig(seed=s["seed"])
    if quick:
        config = config.replace(total_timesteps=s["total_timesteps"])
    tracker = EvalTracker(every=s["eval_every"])
    _, history = train_ppo(config, callback=tracker, progress=not quick)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(column(history, "env_steps"), column(history, "episode_return"), ".", color="C0", alpha=0.25,
            ms=4, label="training episodes (mean of those ending in a rollout)")
    steps, means = zip(*tracker.evals)
    solved = tracker.first_at(475)
    print(f"CartPole: evaluation first >= 475 {'never' if solved is None else f'after {solved} env steps'}; "
          "evaluations "
          + ", ".join(f"{m:.0f}" for m in means) + f" (every {s['eval_every']} steps); "
          f"{history[-1]['env_steps']} env steps in {history[-1]['wall_time']:.1f} s")
    ax.plot(steps, means, "o-", color="C0", ms=4, label="evaluation (20 episodes, most likely action)")
    ax.axhline(475, color="gray", ls="--", lw=1, label="475 (CartPole-v1 counts as solved)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(f"Lesson 4: PPO on CartPole-v1 (seed {s['seed']})", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def save_rlhf(path: Path | str, quick: bool = False) -> Path:
    """Lesson 6, sections 6 and 8: PPO on the tiny GPT-2 against its reward model, with the adaptive
    KL penalty and with beta = 0 (:data:`LESSON6`): the reward-model score, VADER (the held-out
    judge), the KL to the reference and the entropy on the training batches."""
    import copy

    from ppo_edu.lm import load_lm
    from ppo_edu.ppo import torch_threads
    from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
    from ppo_edu.rlhf.plots import plot_history
    from ppo_edu.rlhf.setups import OFFLINE, judge_fn, load_prompts, load_reward_fn

    s = {**LESSON6, **(QUICK["rlhf"] if quick else {})}
    with torch_threads(1):
        lm, tokenizer = load_lm(OFFLINE["policy"])
        reward_fn = load_reward_fn(OFFLINE["reward"])
        prompts = load_prompts(OFFLINE["prompts"], OFFLINE["prompt_split"], seed=s["seed"])
        train_prompts = prompts[s["eval_prompts"]:]
        reference = frozen_reference(lm)
        config = RLHFConfig(batch_size=s["batch_size"], mini_batch_size=s["mini_batch_size"],
                            ppo_epochs=s["ppo_epochs"], learning_rate=s["learning_rate"],
                            max_new_tokens=s["max_new_tokens"], init_kl_coef=s["init_kl_coef"],
                            target_kl=s["target_kl"], kl_horizon=s["kl_horizon"], seed=s["seed"])
        no_kl = RLHFConfig(**{**config.__dict__, "init_kl_coef": 0.0, "adaptive_kl": False})
        histories = {}
        for name, cfg, steps in ((f"beta adaptive (target {s['target_kl']:g} nats)", config, s["ppo_steps"]),
                                 ("beta = 0", no_kl, s["overopt_steps"])):
            trainer = RLHFTrainer(PolicyWithValueHead(copy.deepcopy(lm)), reference, tokenizer, reward_fn,
                                  train_prompts, cfg, judge_fn=judge_fn)
            histories[name] = trainer.train(steps=steps, progress=not quick)
    for name, history in histories.items():
        last = history[-10:]
        print(f"{name}: over its last {len(last)} steps, on the training batches: "
              + ", ".join(f"{key} {np.mean([h[key] for h in last]):.2f}"
                          for key in ("score", "judge", "kl", "entropy", "kl_coef")))
    fig = plot_history(histories, keys=("score", "judge", "kl", "entropy"),
                       title=f"Lesson 6: PPO on a tiny GPT-2, with the KL penalty and without (seed {s['seed']})")
    kl_axes = fig.axes[2]
    kl_axes.set_yscale("symlog", linthresh=1.0)  # beta = 0 runs past 100 nats
    lowest = min(h["kl"] for history in histories.values() for h in history)
    kl_axes.set_ylim(bottom=min(0.0, lowest))  # a batch's k1 can be below 0; none hidden
    return _save(fig, path)


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


FIGURES = {
    "l_clip": lambda path, quick: save_l_clip(path),
    "many_epochs": save_many_epochs,
    "cartpole": save_cartpole,
    "rlhf": save_rlhf,
}
"""Each figure ``make figures`` writes: its file is ``assets/<name>.png``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate the course figures in assets/ (about five minutes on one CPU core).")
    parser.add_argument("--out", default=str(ASSETS), help="output folder (default: assets/)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), metavar="NAME",
                        help=f"only these figures, of {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps of each run instead of the lessons' full settings: checks "
                             "that the figures are made, in seconds; not the README's figures")
    args = parser.parse_args(argv)
    if args.quick and Path(args.out).resolve() == ASSETS.resolve():
        parser.error("--quick draws a few steps of each run, not the figures the README shows: "
                     "give it another folder with --out, so that assets/ keeps the real ones")
    for name in args.only or FIGURES:
        path = FIGURES[name](Path(args.out) / f"{name}.png", args.quick)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
