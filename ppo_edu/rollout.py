"""Rollout collection from a gymnasium 1.x vector environment.

Gymnasium 1.0 changed vector autoreset: by default (``NEXT_STEP``) the step *after* an
episode ends returns the reset observation, reward 0 and an action that was ignored.
Code written for the old behaviour silently trains on those fake transitions
(CleanRL issue 499). We use ``SAME_STEP`` autoreset: the step that ends an episode
returns the first observation of the next one, and the true final observation is in
``info["final_obs"]``. We need that final observation: a *truncated* episode
(CartPole's 500-step time limit) must bootstrap from V(final observation), while a
*terminated* one (the pole fell) has no future. The collector refuses any other mode.

Shapes: ``(T, N)`` is time x environments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from ppo_edu._checks import require_count, require_device, require_same_shape, require_tensor
from ppo_edu.agents import ActorCritic, NumpyPolicy, require_agent_fits


def make_cartpole_envs(num_envs: int = 8, seed: int | None = None, env_id: str = "CartPole-v1"):
    """A synchronous vector env with SAME_STEP autoreset (reset with ``seed`` if given)."""
    num_envs = require_count("num_envs", num_envs)
    if seed is not None:
        seed = require_count("seed", seed, minimum=0)  # gymnasium seeds non-negative integers
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    if seed is not None:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
    return envs


@dataclass
class Rollout:
    """T steps from N environments collected by pi_theta_old.

    ``final_values[t, i]`` is V(final observation) where step t ended env i's episode
    (0 elsewhere); advantage estimators use it for truncated steps. ``next_values`` is
    V(s_T), the bootstrap after the last collected step.
    """

    obs: torch.Tensor  # (T, N, obs_dim)
    actions: torch.Tensor  # (T, N)
    logprobs: torch.Tensor  # (T, N)  log pi_theta_old(a_t|s_t)
    values: torch.Tensor  # (T, N)  V(s_t)
    rewards: torch.Tensor  # (T, N)
    terminated: torch.Tensor  # (T, N) bool
    truncated: torch.Tensor  # (T, N) bool
    final_values: torch.Tensor  # (T, N)
    next_values: torch.Tensor  # (N,)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return self.obs.shape[0]

    @property
    def num_envs(self) -> int:
        return self.obs.shape[1]

    def flat(self) -> dict[str, torch.Tensor]:
        """The per-step tensors flattened to (T * N, ...), for minibatching."""
        T, N = self.actions.shape
        return {
            "obs": self.obs.reshape(T * N, -1),
            "actions": self.actions.reshape(-1),
            "logprobs": self.logprobs.reshape(-1),
            "values": self.values.reshape(-1),
        }


def episode_positions(terminated: torch.Tensor, truncated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each step of a rollout that starts at a reset sits in its episode.

    ``terminated``, ``truncated``: the rollout's ``(T, N)`` bool flags. Returns two ``(T, N)``
    integer tensors: ``since_start``, the number of earlier steps of the same episode (0 at
    an episode's first step; the rollout's first row is taken to start episodes, which holds
    for a rollout collected right after ``envs.reset``, such as a new
    :class:`RolloutCollector`'s first one), and ``until_termination``, how many steps after
    this one the episode terminates (0 on the terminating step itself), or -1 where it does
    not terminate within the rollout (it is truncated, or still running at the end).
    """
    for name, flags in (("terminated", terminated), ("truncated", truncated)):
        require_tensor(name, flags)
        if flags.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor, got {flags.dtype}")
    require_same_shape(terminated=terminated, truncated=truncated)
    if terminated.dim() != 2:
        raise ValueError(f"terminated and truncated must have shape (T, N), got {tuple(terminated.shape)}")
    terminated, truncated = terminated.cpu(), truncated.cpu()
    ended = terminated | truncated
    T = terminated.shape[0]
    since = torch.zeros(terminated.shape, dtype=torch.long)
    until = torch.full(terminated.shape, -1, dtype=torch.long)
    for t in range(1, T):  # forwards: an episode starts on the step after an end
        since[t] = torch.where(ended[t - 1], 0, since[t - 1] + 1)
    for t in reversed(range(T)):  # backwards: count down to the termination, if it comes
        after = until[t + 1] if t + 1 < T else torch.full_like(until[t], -1)
        here = torch.where(ended[t], -1, torch.where(after >= 0, after + 1, -1))
        until[t] = torch.where(terminated[t], 0, here)
    return since, until


class RolloutCollector:
    """Steps a vector env with an agent and returns :class:`Rollout` batches.

    The collector keeps the current observations between calls, so consecutive
    rollouts continue the same episodes (as PPO's fixed-length segments do). ``seed``
    fixes the environments' start states (``envs.reset(seed=seed)``); the agent samples its
    actions from torch's global RNG, so call ``torch.manual_seed`` first for reproducible
    actions (``train_ppo`` and the lessons do).
    """

    def __init__(self, envs: gym.vector.VectorEnv, agent: ActorCritic, seed: int | None = None,
                 device: torch.device | str = "cpu"):
        mode = envs.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(
                f"the vector env uses autoreset mode {mode}; RolloutCollector needs "
                "AutoresetMode.SAME_STEP (build it with ppo_edu.rollout.make_cartpole_envs) so that "
                "no transition crosses a reset and truncated episodes keep their final observation"
            )
        if not isinstance(envs.single_action_space, gym.spaces.Discrete):
            raise ValueError(
                f"need a Discrete action space, got {type(envs.single_action_space).__name__}"
            )
        require_agent_fits(agent, envs)
        if seed is not None:
            seed = require_count("seed", seed, minimum=0)  # gymnasium seeds non-negative ints
        self.envs, self.agent, self.device = envs, agent, require_device(device)
        obs, _ = envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32)  # the current observations, (N, obs_dim)
        self._running_return = np.zeros(envs.num_envs)
        self._running_length = np.zeros(envs.num_envs, dtype=np.int64)

    @torch.no_grad()
    def collect(self, num_steps: int) -> Rollout:
        num_steps = require_count("num_steps", num_steps)
        T, N = num_steps, self.envs.num_envs
        policy = self._policy()
        # Per-step results go into numpy arrays and become tensors once at the end:
        # a torch call costs microseconds, and this loop runs every environment step.
        obs_buf = np.zeros((T, N, self.agent.obs_dim), dtype=np.float32)
        actions = np.zeros((T, N), dtype=np.int64)
        logprobs = np.zeros((T, N), dtype=np.float32)
        values = np.zeros((T, N), dtype=np.float32)
        rewards = np.zeros((T, N), dtype=np.float32)
        terminated = np.zeros((T, N), dtype=bool)
        truncated = np.zeros((T, N), dtype=bool)
        final_values = np.zeros((T, N), dtype=np.float32)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []

        for t in range(T):
            obs_buf[t] = self.obs
            actions[t], logprobs[t], values[t] = policy.act(self.obs)
            next_obs, rewards[t], terminated[t], truncated[t], info = self.envs.step(actions[t])

            self._running_return += rewards[t]
            self._running_length += 1
            done = terminated[t] | truncated[t]
            if done.any():
                # SAME_STEP autoreset: next_obs[i] already starts env i's next episode; the
                # observation the episode really ended in is info["final_obs"][i].
                ended = np.flatnonzero(done)
                final_values[t, ended] = policy.value(np.stack([info["final_obs"][i] for i in ended]))
                for i in ended:
                    episode_returns.append(float(self._running_return[i]))
                    episode_lengths.append(int(self._running_length[i]))
                self._running_return[ended] = 0.0
                self._running_length[ended] = 0
            self.obs = np.asarray(next_obs, dtype=np.float32)

        tensor = lambda a: torch.from_numpy(a).to(self.device)
        return Rollout(
            obs=tensor(obs_buf), actions=tensor(actions), logprobs=tensor(logprobs),
            values=tensor(values), rewards=tensor(rewards), terminated=tensor(terminated),
            truncated=tensor(truncated), final_values=tensor(final_values),
            next_values=tensor(policy.value(self.obs).astype(np.float32)),
            episode_returns=episode_returns, episode_lengths=episode_lengths,
        )

    def _policy(self):
        """The agent's policy for numpy observations: :class:`~ppo_edu.agents.NumpyPolicy` on
        the CPU for a stock :class:`~ppo_edu.agents.ActorCritic` (faster for these tiny
        MLPs), ``agent.act`` through tensors for anything else: another device, overridden
        methods, or actor/critic layers NumpyPolicy does not compute."""
        if self.device.type == "cpu" and NumpyPolicy.supports(self.agent):
            return self.agent.numpy_policy()
        return _TorchPolicy(self.agent, self.device)


class _TorchPolicy:
    """``agent.act`` and ``agent.value`` with numpy in and out (agents on a GPU, or any agent
    :class:`~ppo_edu.agents.NumpyPolicy` does not compute: see ``RolloutCollector._policy``)."""

    def __init__(self, agent, device: torch.device):
        self.agent, self.device = agent, device

    def act(self, obs):
        out = self.agent.act(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        return tuple(x.cpu().numpy() for x in out)

    def value(self, obs):
        return self.agent.value(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
