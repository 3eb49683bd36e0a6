"""Advantage estimation over ``(T, N)`` rollouts: returns, TD residuals and GAE.

Episode ends come in two kinds (gymnasium's ``terminated`` / ``truncated``):

- terminated: the MDP ended (the pole fell). No future reward: the bootstrap is 0.
- truncated: a time limit cut the episode. The state still has a future, so the
  bootstrap is V(final observation). Treating truncation as termination teaches the
  critic that states near the time limit are worth nothing (PPO-PyTorch #73, CleanRL #198).

In both cases nothing flows across the boundary: the next row of the rollout belongs
to a new episode. ``final_values[t]`` holds V(final observation) for steps that ended
an episode; ``next_values`` holds V(s_T) after the last step.
"""

from __future__ import annotations

import torch

from ppo_edu._checks import require_finite, require_same_shape


def _validate(rewards, values, terminated, truncated, final_values, next_values, gamma, lam=None):
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if lam is not None and not (0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (T, N), got {tuple(rewards.shape)}")
    require_same_shape(rewards=rewards, values=values, terminated=terminated,
                       truncated=truncated, final_values=final_values)
    if tuple(next_values.shape) != (rewards.shape[1],):
        raise ValueError(
            f"next_values must have shape (N,) = ({rewards.shape[1]},), got {tuple(next_values.shape)}"
        )
    require_finite(rewards=rewards, values=values, final_values=final_values, next_values=next_values)


def bootstrap_values(values, terminated, truncated, final_values, next_values) -> torch.Tensor:
    """V(s_{t+1}) as each step's target should see it, shape (T, N).

    values[t + 1] within an episode, V(final obs) after a truncation, 0 after a termination.
    """
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
    """GAE(gamma, lambda) (Schulman et al. 2015, eq. 16), truncated at episode ends.

    A_t = delta_t + gamma lambda A_{t+1}, with A_{t+1} taken as 0 when step t ended an
    episode (terminated or truncated). Returns (advantages, returns) with
    returns = advantages + values, the critic's target. Shapes (T, N).
    """
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
