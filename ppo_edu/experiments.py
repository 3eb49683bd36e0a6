"""The surrogate experiments of lessons 1 and 2, on real CartPole batches.

1. :func:`train_vanilla_pg` gives a *partly trained* policy: vanilla policy gradient,
   i.e. one gradient step on L^CPI per fresh batch (its gradient at theta_old is the
   policy gradient), plus a critic for the advantages.
2. :func:`collect_batch` freezes one batch from that policy: states, actions,
   log pi_theta_old, advantages (GAE, normalised).
3. :func:`surrogate_epochs` optimises a surrogate on that one batch for many epochs and
   records, after each epoch, KL(pi_old || pi) on the batch's states and the clip fraction,
   and every ``eval_every`` epochs the policy's real return (fresh episodes).
4. :func:`objective_along_line` evaluates L^CPI, the clipped term, L^CLIP and KL along
   theta_old + alpha (theta_new - theta_old), PPO paper Figure 2.
5. :func:`surrogate_seed_sweep` repeats steps 1-3 on several seeds, so a lesson can tell
   what an objective does from what one seed's run happened to do.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ppo_edu._checks import require_count, require_positive
from ppo_edu.advantages import gae_from_rollout
from ppo_edu.agents import ActorCritic
from ppo_edu.evaluate import evaluate
from ppo_edu.objectives import (
    approx_kl,
    categorical_kl,
    clipped_surrogate,
    cpi_surrogate,
    probability_ratio,
)
from ppo_edu.ppo import normalize_advantages
from ppo_edu.rollout import RolloutCollector, make_cartpole_envs

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Batch:
    """One frozen batch collected by pi_theta_old; all tensors have B = T * N rows."""

    obs: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B,)
    old_logprobs: torch.Tensor  # (B,)  log pi_theta_old(a|s)
    advantages: torch.Tensor  # (B,)  normalised GAE
    old_logits: torch.Tensor  # (B, n_actions)  pi_theta_old's logits, for exact KL

    def __len__(self) -> int:
        return self.actions.shape[0]


def train_vanilla_pg(agent: ActorCritic, iterations: int = 30, num_envs: int = 8,
                     num_steps: int = 128, lr: float = 3e-3, gamma: float = 0.99,
                     lam: float = 0.95, seed: int = 0, progress: bool = True) -> list[dict]:
    """Vanilla policy gradient: one Adam step per batch on -L^CPI + 0.5 x the critic's loss.

    Trains ``agent`` in place for ``iterations`` batches of ``num_envs`` x ``num_steps``
    CartPole transitions, at learning rate ``lr``, with GAE(``gamma``, ``lam``) advantages
    normalised over the batch; ``seed`` seeds torch, the environments and the sampling.
    Returns a history: one dict per iteration with the mean return of episodes finished.
    """
    iterations = require_count("iterations", iterations)  # 0 or -3 returned [] and an untrained agent
    torch.manual_seed(seed)
    envs = make_cartpole_envs(num_envs, seed=seed)
    collector = RolloutCollector(envs, agent, seed=seed)
    optimiser = torch.optim.Adam(agent.parameters(), lr=lr)
    history = []
    for it in tqdm(range(iterations), desc="vanilla PG", disable=not progress):
        rollout = collector.collect(num_steps)
        advantages, returns = gae_from_rollout(rollout, gamma, lam)
        flat = rollout.flat()
        logprobs, _, values = agent.evaluate_actions(flat["obs"], flat["actions"])
        policy_loss = -cpi_surrogate(logprobs, flat["logprobs"], normalize_advantages(advantages.reshape(-1)))
        value_loss = 0.5 * ((values - returns.reshape(-1)) ** 2).mean()
        optimiser.zero_grad()
        (policy_loss + 0.5 * value_loss).backward()
        optimiser.step()
        finished = rollout.episode_returns
        history.append({"iteration": it, "episode_return": sum(finished) / len(finished) if finished else float("nan")})
    envs.close()
    return history


@torch.no_grad()
def collect_batch(agent: ActorCritic, num_envs: int = 8, num_steps: int = 256, gamma: float = 0.99,
                  lam: float = 0.95, seed: int = 1) -> Batch:
    """Roll out ``agent`` (pi_theta_old) once and freeze the batch.

    ``num_envs`` x ``num_steps`` CartPole transitions (``seed`` seeds torch, the environments
    and the sampling), with GAE(``gamma``, ``lam``) advantages normalised over the batch and
    pi_theta_old's log-probs and logits kept for the ratio and the KL.
    """
    torch.manual_seed(seed)
    envs = make_cartpole_envs(num_envs, seed=seed)
    rollout = RolloutCollector(envs, agent, seed=seed).collect(num_steps)
    envs.close()
    advantages, _ = gae_from_rollout(rollout, gamma, lam)
    flat = rollout.flat()
    return Batch(obs=flat["obs"], actions=flat["actions"], old_logprobs=flat["logprobs"],
                 advantages=normalize_advantages(advantages.reshape(-1)), old_logits=agent.logits(flat["obs"]))


def cpi_objective(logprobs, old_logprobs, advantages) -> torch.Tensor:
    """L^CPI = E_t[r_t(theta) A_t] (PPO paper, eq. 6), to maximise: the objective of lesson 1's
    many epochs. Arguments as in :func:`ppo_edu.objectives.cpi_surrogate` (one shape, e.g. (T,))."""
    return cpi_surrogate(logprobs, old_logprobs, advantages)


def clip_objective(epsilon: float = 0.2) -> Objective:
    """L^CLIP with this ``epsilon`` (PPO paper, eq. 7), to maximise, as an objective with
    :func:`cpi_objective`'s signature: E_t[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]."""
    def objective(logprobs, old_logprobs, advantages):
        return clipped_surrogate(logprobs, old_logprobs, advantages, epsilon).objective
    objective.__name__ = f"clip_objective(epsilon={epsilon})"
    return objective


def surrogate_epochs(agent_old: ActorCritic, batch: Batch, objective: Objective, epochs: int = 30,
                     lr: float = 3e-3, minibatch_size: int = 256, epsilon: float = 0.2,
                     eval_episodes: int = 32, eval_every: int = 1, eval_seed: int = 10_000,
                     deterministic_eval: bool = False, seed: int = 0,
                     progress: bool = True) -> tuple[ActorCritic, list[dict]]:
    """Maximise ``objective`` on one batch for many epochs, starting from a copy of ``agent_old``.

    ``objective(logprobs, old_logprobs, advantages)`` returns the scalar to maximise.
    Only the actor is updated (the critic plays no role in the surrogate). The history has
    a row for the start and for every epoch, each with the exact KL(pi_old || pi) averaged
    over the batch's states, the k3 sample estimate, the clip fraction at ``epsilon`` and
    the surrogate's value. Every ``eval_every`` epochs (and at the start and the end) the
    row also has the evaluated return: the mean over ``eval_episodes`` fresh episodes of
    the stochastic policy itself (``deterministic_eval=False``), the return that L^CPI is
    a local approximation of.
    """
    epochs = require_count("epochs", epochs)  # True ran one epoch, 2.5 failed inside range()
    minibatch_size = require_count("minibatch_size", minibatch_size)
    eval_every = require_count("eval_every", eval_every)  # evaluate every that many epochs
    # the clip fraction's epsilon: |r - 1| > -0.2 holds for every sample, so a negative one
    # recorded a clip fraction of 1.0 whatever the policy did
    require_positive("epsilon", epsilon)
    agent = copy.deepcopy(agent_old)
    optimiser = torch.optim.Adam(agent.actor.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(batch)

    def record(epoch: int) -> dict:
        with torch.no_grad():
            logits = agent.logits(batch.obs)
            logprobs = torch.distributions.Categorical(logits=logits).log_prob(batch.actions)
            ratio = torch.exp(logprobs - batch.old_logprobs)
            row = {
                "epoch": epoch,
                "kl": categorical_kl(batch.old_logits, logits).mean().item(),
                "approx_kl": approx_kl(logprobs, batch.old_logprobs).item(),
                "clip_fraction": ((ratio - 1).abs() > epsilon).float().mean().item(),
                "surrogate": objective(logprobs, batch.old_logprobs, batch.advantages).item(),
            }
        if epoch % eval_every == 0 or epoch == epochs:
            row["eval_return"] = evaluate(agent, eval_episodes, seed=eval_seed,
                                          deterministic=deterministic_eval).mean
        return row

    history = [record(0)]
    for epoch in tqdm(range(1, epochs + 1), desc=getattr(objective, "__name__", "objective"),
                      disable=not progress):
        for idx in torch.randperm(n, generator=generator).split(minibatch_size):
            logprobs, _, _ = agent.evaluate_actions(batch.obs[idx], batch.actions[idx])
            loss = -objective(logprobs, batch.old_logprobs[idx], batch.advantages[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        history.append(record(epoch))
    return agent, history


@torch.no_grad()
def objective_along_line(agent_old: ActorCritic, agent_new: ActorCritic, batch: Batch,
                         alphas, epsilon: float = 0.2) -> dict[str, list[float]]:
    """PPO paper Figure 2's curves at theta_old + alpha (theta_new - theta_old): L^CPI,
    E_t[clip(r_t, 1 - eps, 1 + eps) A_t] (the clipped term alone), L^CLIP and the mean
    KL(pi_old || pi).

    ``agent_old`` is theta_old (it sampled ``batch``), ``agent_new`` theta_new; only the actors'
    weights are interpolated, once per value in ``alphas`` (0 is theta_old, 1 theta_new, > 1
    beyond it). L^CLIP clips at ``epsilon``. Returns lists keyed "alpha", "cpi", "clip_term",
    "clip" (L^CLIP) and "kl".
    """
    old = dict(agent_old.actor.named_parameters())
    new = dict(agent_new.actor.named_parameters())
    probe = copy.deepcopy(agent_old)
    out: dict[str, list[float]] = {"alpha": [], "cpi": [], "clip_term": [], "clip": [], "kl": []}
    for alpha in alphas:
        for name, param in probe.actor.named_parameters():
            param.copy_(old[name] + alpha * (new[name] - old[name]))
        logits = probe.logits(batch.obs)
        logprobs = torch.distributions.Categorical(logits=logits).log_prob(batch.actions)
        out["alpha"].append(float(alpha))
        out["cpi"].append(cpi_surrogate(logprobs, batch.old_logprobs, batch.advantages).item())
        ratio = probability_ratio(logprobs, batch.old_logprobs)
        out["clip_term"].append((ratio.clamp(1 - epsilon, 1 + epsilon) * batch.advantages).mean().item())
        out["clip"].append(clipped_surrogate(logprobs, batch.old_logprobs, batch.advantages, epsilon).objective.item())
        out["kl"].append(categorical_kl(batch.old_logits, logits).mean().item())
    return out


def surrogate_seed_sweep(objectives: dict[str, Objective], seeds: Sequence[int], *, pg_iterations: int = 25,
                         batch_envs: int = 8, batch_steps: int = 256, epochs: int = 16, lr: float = 3e-3,
                         minibatch_size: int = 256, epsilon: float = 0.2, eval_episodes: int = 16,
                         progress: bool = True) -> list[dict]:
    """Lessons 1 and 2's experiment once per seed: is what one run showed a property of the
    objective, or of that run?

    Each seed repeats the lessons' recipe exactly: ``torch.manual_seed(seed)``, a fresh
    :class:`ActorCritic`, :func:`train_vanilla_pg` (``seed``), :func:`collect_batch`
    (``seed + 100``), then :func:`surrogate_epochs` (``seed``) with each objective on that
    one batch. So the row for seed s is the lesson's run with ``SETTINGS["seed"] = s``,
    number for number. The return is evaluated at the start and after the last epoch only.

    Returns one row per (seed, objective): ``seed``, ``objective`` (its key), ``kl`` (exact
    KL(pi_old || pi) on the batch after the last epoch), ``clip_fraction`` (after the last
    epoch, at ``epsilon``: a diagnostic only; a clipped objective carries its own epsilon),
    ``surrogate_before`` and ``surrogate_after``, ``return_before`` and ``return_after``.
    """
    if not objectives:
        raise ValueError("objectives is empty: give at least one {name: objective}")
    if isinstance(seeds, numbers.Number):  # sweep_seeds=10 is a count; the seeds are range(10)
        raise ValueError(f"seeds must be a sequence of seeds such as range({seeds}), got the number {seeds}")
    seeds = [require_count("each seed", seed, minimum=0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds} (a repeated seed repeats its run exactly)")
    for name, value in (("pg_iterations", pg_iterations), ("batch_envs", batch_envs), ("batch_steps", batch_steps),
                        ("epochs", epochs), ("minibatch_size", minibatch_size), ("eval_episodes", eval_episodes)):
        require_count(name, value)  # before any seed's pretraining, and under the sweep's own names
    require_positive("epsilon", epsilon)  # the clip fraction's, as in surrogate_epochs
    rows = []
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        torch.manual_seed(seed)
        agent_old = ActorCritic(obs_dim=4, n_actions=2)
        train_vanilla_pg(agent_old, iterations=pg_iterations, seed=seed, progress=False)
        batch = collect_batch(agent_old, num_envs=batch_envs, num_steps=batch_steps, seed=seed + 100)
        for name, objective in objectives.items():
            _, history = surrogate_epochs(agent_old, batch, objective=objective, epochs=epochs, lr=lr,
                                          minibatch_size=minibatch_size, epsilon=epsilon,
                                          eval_episodes=eval_episodes, eval_every=epochs, seed=seed,
                                          progress=False)
            first, last = history[0], history[-1]
            rows.append({"seed": seed, "objective": name, "kl": last["kl"], "clip_fraction": last["clip_fraction"],
                         "surrogate_before": first["surrogate"], "surrogate_after": last["surrogate"],
                         "return_before": first["eval_return"], "return_after": last["eval_return"]})
    return rows
