"""Evaluation: the policy's real return, measured by playing full episodes."""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from ppo_edu._checks import require_count
from ppo_edu.agents import ActorCritic, require_agent_fits


class EvalResult(NamedTuple):
    mean: float
    std: float
    returns: list[float]


@torch.no_grad()
def evaluate(agent: ActorCritic, episodes: int = 20, seed: int = 10_000,
             deterministic: bool = True, env_id: str = "CartPole-v1") -> EvalResult:
    """Mean return over ``episodes`` full episodes, one per env of a vector env.

    ``deterministic=True`` takes the most likely action (the usual PPO evaluation).
    Seeds ``seed, seed + 1, ...`` fix the initial states, so two policies evaluated with
    the same seed face the same start states; with ``deterministic=False`` the seed also
    fixes the sampled actions. Each env counts its first episode only (envs that finish
    early auto-reset and are masked out).
    """
    episodes = require_count("episodes", episodes)
    seed = require_count("seed", seed, minimum=0)
    if not isinstance(deterministic, (bool, np.bool_)):  # "False", a string, would be true
        raise ValueError(f"deterministic must be True or False, got {deterministic!r}")
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    try:
        require_agent_fits(agent, envs)
    except ValueError:
        envs.close()
        raise
    device = next(agent.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        alive = np.ones(episodes, dtype=bool)
        while alive.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            probs = agent.distribution(obs_t).probs
            if deterministic:
                actions = probs.argmax(-1)
            else:
                actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            obs, rewards, terminated, truncated, _ = envs.step(actions.cpu().numpy())
            returns += rewards * alive
            alive &= ~(terminated | truncated)
    finally:
        envs.close()
    return EvalResult(float(returns.mean()), float(returns.std()), returns.tolist())
