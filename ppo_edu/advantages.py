"""Advantage estimation over ``(T, N)`` rollouts: returns, TD residuals and GAE.

Episode ends come in two kinds (gymnasium's ``terminated`` / ``truncated``):

- terminated: the MDP ended (the pole fell). No future reward: the bootstrap is 0.
- truncated: a time limit cut the episode. The state still has a future, so the
  bootstrap is V(final observation). Treating truncation as termination teaches the
  critic that states near the time limit are worth nothing (CleanRL #198; the fix
  proposed in PPO-PyTorch #73 does this).

In both cases nothing flows across the boundary: the next row of the rollout belongs
to a new episode (PPO-PyTorch #73: at its time limit the next episode's return flowed
into the cut one). ``final_values[t]`` holds V(final observation) for steps that ended
an episode; ``next_values`` holds V(s_T) after the last step.
"""

from __future__ import annotations

import numbers

import torch

from ppo_edu._checks import (
    require_binary,
    require_count,
    require_finite,
    require_same_shape,
    require_seed,
    require_tensor,
)


def _validate(rewards, values, terminated, truncated, final_values, next_values, gamma, lam=None):
    for name, value in (("rewards", rewards), ("values", values), ("terminated", terminated),
                        ("truncated", truncated), ("final_values", final_values),
                        ("next_values", next_values)):
        require_tensor(name, value)  # numpy (what gymnasium returns) has no .dim(): say so
    for name, value in (("gamma", gamma), ("lam", lam)):
        if (name == "gamma" or value is not None) and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"{name} must be a number, got {value!r}")  # True would read as 1
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if lam is not None and not (0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (T, N), got {tuple(rewards.shape)}")
    if not rewards.is_floating_point():  # the outputs take its dtype: ints would round them
        raise TypeError(f"rewards must be a floating-point tensor, got {rewards.dtype}; "
                        "e.g. torch.tensor(..., dtype=torch.float32)")
    require_same_shape(rewards=rewards, values=values)
    _validate_fields(values, terminated, truncated, final_values, next_values)
    require_finite(rewards=rewards)


def _validate_fields(values, terminated, truncated, final_values, next_values) -> None:
    """Everything but the rewards: shapes (T, N) and (N,), 0/1 done flags, finite values."""
    for name, value in (("values", values), ("terminated", terminated), ("truncated", truncated),
                        ("final_values", final_values), ("next_values", next_values)):
        require_tensor(name, value)  # bootstrap_values comes here directly: numpy has no .dim()
    if values.dim() != 2:
        raise ValueError(f"values must have shape (T, N), got {tuple(values.shape)}")
    require_same_shape(values=values, terminated=terminated, truncated=truncated,
                       final_values=final_values)
    if tuple(next_values.shape) != (values.shape[1],):
        raise ValueError(
            f"next_values must have shape (N,) = ({values.shape[1]},), got {tuple(next_values.shape)}"
        )
    require_binary("terminated", terminated)
    require_binary("truncated", truncated)
    require_finite(values=values, final_values=final_values, next_values=next_values)


def bootstrap_values(values, terminated, truncated, final_values, next_values) -> torch.Tensor:
    """V(s_{t+1}) as each step's target should see it, shape (T, N).

    values[t + 1] within an episode, V(final obs) after a truncation, 0 after a termination.
    """
    _validate_fields(values, terminated, truncated, final_values, next_values)
    nxt = torch.cat([values[1:], next_values.unsqueeze(0)], dim=0)
    nxt = torch.where(truncated.bool(), final_values, nxt)
    return torch.where(terminated.bool(), torch.zeros_like(nxt), nxt)


def td_residuals(rewards, values, terminated, truncated, final_values, next_values,
                 gamma: float = 0.99) -> torch.Tensor:
    """delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with the bootstrap rules above. Shape (T, N)."""
    _validate(rewards, values, terminated, truncated, final_values, next_values, gamma)
    nxt = bootstrap_values(values, terminated, truncated, final_values, next_values)
    return rewards + gamma * nxt - values


def compute_gae(rewards, values, terminated, truncated, final_values, next_values,
                gamma: float = 0.99, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) (Schulman et al. 2016, eq. 16), truncated at episode ends.

    A_t = delta_t + gamma lambda A_{t+1}, with A_{t+1} taken as 0 when step t ended an
    episode (terminated or truncated). Returns (advantages, returns) with
    returns = advantages + values, the critic's target. Shapes (T, N).
    """
    if lam is None:  # _validate reads None as "no lambda" (td_residuals has none); GAE needs one
        raise ValueError("lam must be a number in [0, 1], got None")
    _validate(rewards, values, terminated, truncated, final_values, next_values, gamma, lam)
    deltas = td_residuals(rewards, values, terminated, truncated, final_values, next_values, gamma)
    episode_continues = 1.0 - (terminated.bool() | truncated.bool()).to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_values)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * episode_continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(rewards, terminated, truncated, final_values, next_values,
                       gamma: float = 0.99) -> torch.Tensor:
    """Monte-Carlo returns G_t = r_t + gamma G_{t+1} inside each episode, shape (T, N).

    At a truncation G continues from V(final obs); at a termination from 0; after the
    last step from ``next_values``. Equal to GAE with lambda = 1 plus the values.
    """
    zeros = torch.zeros_like(rewards)
    _validate(rewards, zeros, terminated, truncated, final_values, next_values, gamma)
    returns = torch.zeros_like(rewards)
    running = next_values.clone()
    for t in reversed(range(rewards.shape[0])):
        running = torch.where(truncated[t].bool(), final_values[t], running)
        running = torch.where(terminated[t].bool(), torch.zeros_like(running), running)
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def gae_from_rollout(rollout, gamma: float = 0.99, lam: float = 0.95):
    """Convenience: :func:`compute_gae` on a :class:`ppo_edu.rollout.Rollout`."""
    return compute_gae(rollout.rewards, rollout.values, rollout.terminated, rollout.truncated,
                       rollout.final_values, rollout.next_values, gamma, lam)


# --------------------------------------------------------------------------- lesson 3's experiment
# How good are these estimators? For a fixed policy pi and critic V we can measure it:
# start many independent continuations from the same (s, a), take a, then follow pi.
# Their average discounted return estimates Q^pi(s, a); each continuation also gives one
# GAE estimate A_hat(s, a) per lambda, computed with the (imperfect) critic V.


@torch.no_grad()
def continuations(agent, obs, first_actions, horizon: int = 400, seed: int = 0) -> dict:
    """Play CartPole from the given observations: ``first_actions`` first, then pi's samples.

    ``obs`` (B, 4) and ``first_actions`` (B,) are batched start points (repeat a row to get
    several continuations of the same (s, a)). Each continuation runs until the pole falls
    or for ``horizon`` steps; steps after a fall are padded as terminated with reward 0 and
    value 0, so they contribute nothing. Returns the (H, B) tensors that :func:`compute_gae`
    takes, H <= ``horizon``: play stops once every continuation has ended (no truncations:
    a horizon cut is bootstrapped through ``next_values`` = V(s_H), which is 0 where the
    episode already ended). ``seed`` seeds the environments and, through
    ``torch.manual_seed(seed)``, pi's samples: the caller's global torch RNG is reset too.
    """
    import gymnasium as gym
    import numpy as np

    # before any env is built: -1 was gymnasium's unnamed "Seed must be greater or equal to
    # zero", 2**64 torch's "Overflow when unpacking long long" after the envs were set up
    seed = require_seed("seed", seed)
    obs = torch.as_tensor(obs, dtype=torch.float32)
    if obs.dim() != 2 or obs.shape[1] != 4 or obs.shape[0] == 0:
        raise ValueError(f"obs must have shape (B, 4): B CartPole observations, got {tuple(obs.shape)}")
    B = obs.shape[0]
    first = torch.as_tensor(first_actions)
    if tuple(first.shape) != (B,):
        raise ValueError(f"first_actions must have shape (B,) = ({B},), one per observation, got "
                         f"{tuple(first.shape)}")
    # as_tensor(..., dtype=long) would read 0.7 as action 0 and 1.2 as action 1
    if first.is_floating_point() or not bool(((first == 0) | (first == 1)).all()):
        shown = list(first_actions) if isinstance(first_actions, (list, tuple)) else first.tolist()
        raise ValueError(f"first_actions must be CartPole actions, integers 0 or 1, got {shown}")
    horizon = require_count("horizon", horizon)
    envs = gym.make_vec("CartPole-v1", num_envs=B, vectorization_mode="vector_entry_point",
                        max_episode_steps=horizon + 10)
    try:
        envs.reset(seed=seed)
        # CartPole's vector env keeps its physical state as a (4, B) array: put our starts there
        envs.unwrapped.state = obs.double().numpy().T.copy()
        torch.manual_seed(seed)
        rewards = torch.zeros(horizon, B)
        values = torch.zeros(horizon, B)
        terminated = torch.zeros(horizon, B, dtype=torch.bool)
        alive = torch.ones(B, dtype=torch.bool)
        actions = torch.as_tensor(first_actions, dtype=torch.long)
        value = agent.value(obs)
        for h in range(horizon):
            if h > 0:
                actions, _, value = agent.act(obs)
            values[h] = value * alive
            next_obs, reward, term, _, _ = envs.step(actions.numpy().astype(np.int64))
            rewards[h] = torch.as_tensor(reward) * alive
            terminated[h] = torch.as_tensor(term) | ~alive
            alive &= ~torch.as_tensor(term)
            obs = torch.as_tensor(next_obs, dtype=torch.float32)
            if not alive.any():
                rewards, values, terminated = rewards[:h + 1], values[:h + 1], terminated[:h + 1]
                break
        next_values = agent.value(obs) * alive
    finally:
        envs.close()
    return dict(rewards=rewards, values=values, terminated=terminated,
                truncated=torch.zeros_like(terminated), final_values=torch.zeros_like(values),
                next_values=next_values)


def lambda_sweep(agent, obs, actions, lambdas, gamma: float = 0.98, n_estimates: int = 32,
                 n_truth: int = 128, horizon: int = 400, seed: int = 0) -> list[dict]:
    """Bias and variance of GAE(gamma, lambda) at M state-action pairs, for each lambda:
    ``obs`` (M, 4) CartPole observations and ``actions`` (M,).

    The target is Q^pi(s, a) - V(s): the true action value (mean discounted return of
    ``n_truth`` independent continuations) minus the critic's own baseline (a baseline
    that depends only on s does not bias the policy gradient, so this is what an advantage
    estimate should get right). Each of ``n_estimates`` other continuations gives one
    A_hat(s, a) per lambda. Returns one record per lambda with ``bias2`` (squared bias,
    corrected for the noise of the finite averages, averaged over the M pairs and then
    clamped at 0), ``variance`` and ``mse``, each averaged over the M pairs (``mse`` is
    measured against the finite-sample truth, so it also holds that estimate's own small
    noise). ``seed`` goes to :func:`continuations`, which calls ``torch.manual_seed(seed)``.
    """
    obs = torch.as_tensor(obs, dtype=torch.float32)
    actions = torch.as_tensor(actions)
    if obs.dim() != 2 or obs.shape[1] != 4 or obs.shape[0] == 0:
        raise ValueError(f"obs must have shape (M, 4): M CartPole observations, got "
                         f"{tuple(obs.shape)}")
    if tuple(actions.shape) != (obs.shape[0],):
        raise ValueError(f"actions must have shape (M,) = ({obs.shape[0]},), one per observation, "
                         f"got {tuple(actions.shape)}")
    if actions.is_floating_point() or not bool(((actions == 0) | (actions == 1)).all()):
        raise ValueError(f"actions must be CartPole actions, integers 0 or 1, got {actions.tolist()}")
    actions = actions.long()
    seed = require_seed("seed", seed)
    # numbers, not converted from "0.9" or True (float() takes both): gamma="0.9" failed with
    # "'<' not supported between instances of 'float' and 'str'"
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a real number in (0, 1], got {gamma!r}")
    if isinstance(lambdas, (str, bytes)) or not hasattr(lambdas, "__iter__"):
        raise ValueError(f"lambdas must be a list of numbers in [0, 1], got {lambdas!r}")
    lambdas = list(lambdas)
    for i, lam in enumerate(lambdas):
        number = (isinstance(lam, numbers.Real) and not isinstance(lam, bool)) or (
            isinstance(lam, torch.Tensor) and lam.numel() == 1 and lam.dtype != torch.bool
            and not lam.is_complex())
        if not number:
            raise ValueError(f"lambdas[{i}] must be a real number in [0, 1], got {lam!r}")
    lambdas = [float(lam) for lam in lambdas]
    if not lambdas:
        raise ValueError("lambdas is empty: give at least one lambda in [0, 1]")
    bad = [lam for lam in lambdas if not (0.0 <= lam <= 1.0)]
    if bad:
        raise ValueError(f"every lambda must be in [0, 1], got {bad}")
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    for name, n in (("n_estimates", n_estimates), ("n_truth", n_truth)):
        if int(n) != n or n < 2:
            raise ValueError(f"{name} must be a whole number >= 2 (a variance needs two "
                             f"samples), got {n!r}")
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a whole number >= 1, got {horizon!r}")
    # whole numbers written as floats (n_truth=128.0) pass the checks: repeat_interleave() and
    # range() take ints only
    n_estimates, n_truth, horizon = int(n_estimates), int(n_truth), int(horizon)
    M, K = obs.shape[0], n_truth + n_estimates
    data = continuations(agent, obs.repeat_interleave(K, 0), actions.repeat_interleave(K),
                         horizon=horizon, seed=seed)
    mc = discounted_returns(data["rewards"], data["terminated"], data["truncated"],
                            data["final_values"], torch.zeros_like(data["next_values"]),
                            gamma)[0].reshape(M, K)
    q_true = mc[:, :n_truth].mean(1)
    target = q_true - agent.value(obs).detach()
    truth_noise = mc[:, :n_truth].var(1) / n_truth  # variance of the Q estimate itself
    records = []
    for lam in lambdas:
        adv, _ = compute_gae(**data, gamma=gamma, lam=lam)
        est = adv[0].reshape(M, K)[:, n_truth:]
        variance = est.var(1)
        raw_bias2 = (est.mean(1) - target) ** 2
        # unbiased per pair; averaged first and clamped after (clamping each pair first
        # would turn the noise into a positive bias)
        bias2 = (raw_bias2 - variance / n_estimates - truth_noise).mean().clamp(min=0)
        records.append({"lam": float(lam), "bias2": float(bias2),
                        "variance": float(variance.mean()),
                        "mse": float(((est - target[:, None]) ** 2).mean())})
    return records


def fit_critic(agent, iterations: int = 20, num_envs: int = 8, num_steps: int = 128,
               epochs: int = 10, lr: float = 1e-3, gamma: float = 0.98, lam: float = 0.95,
               seed: int = 0) -> list[float]:
    """Policy evaluation: train only ``agent``'s critic towards V^pi of its fixed policy.

    Each iteration collects a rollout with the (unchanged) policy, shifts V by the mean of
    its error on that rollout (the output layer's bias: the best constant correction), then
    regresses V on the GAE(gamma, lam) returns for a few epochs (TD(lambda) with a network).
    Returns the critic's explained variance on each iteration's rollout, before its update.

    Why the shift: a critic that lags behind its policy is mostly too low everywhere (on
    lesson 3's snapshots of seeds 0 and 3, V averaged 8 and 9 where the fitted critic
    settles at about 28 and 43). Adam moves each weight by about ``lr`` per step while its
    gradient keeps its sign, so the output bias alone would need tens of thousands of steps
    to close such a gap. Adam's equal-sized steps raise V faster through the many weights
    feeding the last hidden layer, and raising V that way drives each of its tanh units to
    the end that matches its output weight's sign. Once they saturate, no gradient flows
    through them: the output layer still learns, but it can only move V by the same amount
    in every state. Without the shift (lesson 3's snapshots, seeds 1-8, measured 2026-12-05),
    the explained variance after 10 iterations was -0.04 to 0.08, against 0.28 to 0.94 with
    it; after 150 the critics had caught up on seven seeds, and on seed 3 it was still 0 to
    four decimals. The shift is the best constant correction for this rollout's targets
    (which depend on V themselves). It starts with ``torch.manual_seed(seed)`` (the
    caller's global torch RNG is reset) and seeds the environments with ``seed``.
    """
    from ppo_edu.rollout import RolloutCollector, make_cartpole_envs

    # 0 or a negative count returned [] (or an untrained critic) as if it had run
    iterations = require_count("iterations", iterations)
    epochs = require_count("epochs", epochs)
    seed = require_seed("seed", seed)  # before torch.manual_seed: 2**64 overflowed inside torch
    torch.manual_seed(seed)
    envs = make_cartpole_envs(num_envs)
    optimizer = torch.optim.Adam(agent.critic.parameters(), lr=lr)
    scores = []
    try:
        collector = RolloutCollector(envs, agent, seed=seed)
        for _ in range(iterations):
            rollout = collector.collect(num_steps)
            _, returns = gae_from_rollout(rollout, gamma=gamma, lam=lam)
            residual = (returns - rollout.values).var() / returns.var().clamp(min=1e-8)
            scores.append(float(1.0 - residual))
            with torch.no_grad():  # rollout.values is this critic's V on the rollout
                agent.critic[-1].bias += (returns - rollout.values).mean()
            for _ in range(epochs):
                loss = ((agent.value(rollout.obs) - returns) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        envs.close()
    return scores
