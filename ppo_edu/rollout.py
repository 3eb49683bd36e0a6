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

from ppo_edu.agents import ActorCritic


def make_cartpole_envs(num_envs: int = 8, seed: int | None = None, env_id: str = "CartPole-v1"):
    """A synchronous vector env with SAME_STEP autoreset (reset with ``seed`` if given)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
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


class RolloutCollector:
    """Steps a vector env with an agent and returns :class:`Rollout` batches.

    The collector keeps the current observations between calls, so consecutive
    rollouts continue the same episodes (as PPO's fixed-length segments do).
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
        self.envs, self.agent, self.device = envs, agent, torch.device(device)
        obs, _ = envs.reset(seed=seed)
        self.obs = self._tensor(obs)
        self._running_return = np.zeros(envs.num_envs)
        self._running_length = np.zeros(envs.num_envs, dtype=np.int64)

    def _tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def collect(self, num_steps: int) -> Rollout:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        T, N = num_steps, self.envs.num_envs
        # Per-step results go into Python lists and numpy arrays and become tensors once at
        # the end: indexing a torch tensor costs microseconds, and this loop runs every step.
        obs_list, act_list, logp_list, val_list = [], [], [], []
        rewards = np.zeros((T, N), dtype=np.float32)
        terminated = np.zeros((T, N), dtype=bool)
        truncated = np.zeros((T, N), dtype=bool)
        final_values = torch.zeros((T, N), device=self.device)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []

        for t in range(T):
            actions, logprobs, values = self.agent.act(self.obs)
            obs_list.append(self.obs)
            act_list.append(actions)
            logp_list.append(logprobs)
            val_list.append(values)
            next_obs, rewards[t], terminated[t], truncated[t], info = self.envs.step(
                actions.cpu().numpy())

            self._running_return += rewards[t]
            self._running_length += 1
            done = terminated[t] | truncated[t]
            if done.any():
                # SAME_STEP autoreset: next_obs[i] already starts env i's next episode; the
                # observation the episode really ended in is info["final_obs"][i].
                ended = np.flatnonzero(done)
                final_obs = self._tensor(np.stack([info["final_obs"][i] for i in ended]))
                final_values[t, ended] = self.agent.value(final_obs)
                for i in ended:
                    episode_returns.append(float(self._running_return[i]))
                    episode_lengths.append(int(self._running_length[i]))
                self._running_return[ended] = 0.0
                self._running_length[ended] = 0
            self.obs = self._tensor(next_obs)

        return Rollout(
            obs=torch.stack(obs_list), actions=torch.stack(act_list),
            logprobs=torch.stack(logp_list), values=torch.stack(val_list),
            rewards=torch.from_numpy(rewards).to(self.device),
            terminated=torch.from_numpy(terminated).to(self.device),
            truncated=torch.from_numpy(truncated).to(self.device),
            final_values=final_values, next_values=self.agent.value(self.obs),
            episode_returns=episode_returns, episode_lengths=episode_lengths,
        )
