"""Evaluation: the policy's real return, measured by playing full episodes."""

from __future__ import annotations

import copy
import math
import numbers
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from ppo_edu._checks import require_bool, require_count, require_seed
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
    seed = require_seed("seed", seed)  # torch.Generator takes < 2**64
    require_bool("deterministic", deterministic)  # "False", a string, would be true
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


class EvalTracker:
    """A ``train_ppo`` callback that evaluates the agent during training and keeps the best.

    The last policy of a PPO run is not always its best: a run can solve CartPole and lose
    it again before its budget ends (lesson 4 describes one). After the first update at or past
    each multiple of ``every`` env steps, the tracker runs :func:`evaluate` (``episodes``
    episodes, the most likely action, start states fixed by ``seed``) and appends
    ``(env_steps, mean)`` to ``evals``. ``best_agent`` is a copy of the agent at its best
    evaluation (``best_mean``, after ``best_steps`` env steps); of equal evaluations the
    latest wins, the longer-trained agent (on CartPole many evaluations hit the ceiling of
    500, and the later ones come with a better-fitted critic; Stable-Baselines3's
    ``EvalCallback`` keeps the first). Evaluating changes nothing in the training: same
    seed, same history with or without a tracker, but for ``wall_time``, which includes
    the evaluations. Use a new tracker for each run.
    """

    def __init__(self, every: int = 2048, episodes: int = 20, seed: int = 10_000,
                 env_id: str = "CartPole-v1") -> None:
        self.every = require_count("every", every)
        self.episodes = require_count("episodes", episodes)
        self.seed = require_seed("seed", seed)
        self.env_id = env_id
        self.evals: list[tuple[int, float]] = []
        self.best_agent: ActorCritic | None = None
        self.best_mean = -math.inf
        self.best_steps: int | None = None
        self._multiples_done = 0

    def __call__(self, agent: ActorCritic, record: dict) -> bool:
        steps = record["env_steps"]
        if steps // self.every <= self._multiples_done:
            return False
        self._multiples_done = steps // self.every
        mean = evaluate(agent, self.episodes, seed=self.seed, env_id=self.env_id).mean
        self.evals.append((steps, mean))
        if mean >= self.best_mean:
            self.best_agent, self.best_mean, self.best_steps = copy.deepcopy(agent), mean, steps
        return False  # never stops the training

    def first_at(self, target: float) -> int | None:
        """Env steps of the first evaluation with a mean >= ``target`` (None if none had)."""
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or math.isnan(target):
            raise ValueError(f"target must be a number, got {target!r}")
        return next((steps for steps, mean in self.evals if mean >= target), None)
