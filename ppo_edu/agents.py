"""The actor-critic used on CartPole (lessons 1-4).

Two separate small MLPs, as in the PPO paper's continuous-control setup and CleanRL:
the actor maps an observation to action logits, the critic to V(s). Orthogonal
initialisation with a small gain on the policy head keeps the initial policy close to
uniform, so early ratios stay near 1.
"""

from __future__ import annotations

import math
import numbers

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from ppo_edu._checks import require_bool, require_finite


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def _mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), nn.Tanh()]
    layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), gain=out_gain))
    return nn.Sequential(*layers)


def _forward(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)``, calling each layer's ``forward`` directly.

    Skips ``nn.Module.__call__``'s hook machinery, which for these tiny layers costs more
    than the arithmetic (it runs ~10 times per environment step and per gradient step).
    """
    for layer in mlp:
        x = layer.forward(x)
    return x


def _first_weight(net: nn.Module) -> torch.Tensor | None:
    """The weight of ``net``'s first layer (its input dtype), cheaply for a Sequential of
    Linear layers (this runs at every call of ``logits`` and ``value``)."""
    if isinstance(net, nn.Sequential):
        first = next(iter(net._modules.values()), None)
        weight = getattr(first, "weight", None)
        if isinstance(weight, torch.Tensor):
            return weight
    return next(net.parameters(), None)


class ActorCritic(nn.Module):
    """pi_theta(a|s) (a categorical over ``n_actions``) and V(s), from ``obs_dim`` features."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        for name, value, minimum in (("obs_dim", obs_dim, 1), ("n_actions", n_actions, 2),
                                     ("hidden", hidden, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(
                    f"need obs_dim >= 1, n_actions >= 2, hidden >= 1 (whole numbers); {name} is "
                    f"{value!r} (got {obs_dim!r}, {n_actions!r}, {hidden!r})"
                )
        obs_dim, n_actions, hidden = int(obs_dim), int(n_actions), int(hidden)
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        self.actor = _mlp([obs_dim, hidden, hidden, n_actions], out_gain=0.01)
        self.critic = _mlp([obs_dim, hidden, hidden, 1], out_gain=1.0)

    @classmethod
    def for_env(cls, env: gym.Env | gym.vector.VectorEnv, hidden: int = 64) -> "ActorCritic":
        """Build an agent sized for ``env``; only flat Box observations and Discrete actions."""
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        if not isinstance(act_space, gym.spaces.Discrete):
            raise ValueError(
                f"ActorCritic needs a Discrete action space, got {type(act_space).__name__}"
            )
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"ActorCritic needs a flat Box observation space, got {obs_space}")
        return cls(obs_space.shape[0], int(act_space.n), hidden)

    def _check_obs(self, obs: torch.Tensor, net: nn.Module) -> None:
        """TypeError or ValueError naming the problem unless ``obs`` is a finite tensor of
        ``net``'s floating dtype with ``obs_dim`` features last. Without it a numpy array,
        an integer or float64 tensor failed inside torch ("mat1 and mat2 must have the same
        dtype", naming no argument), and a NaN observation gave action 0 with a NaN log-prob."""
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"obs must be a torch.Tensor, got {type(obs).__name__}: use "
                            f"torch.as_tensor(obs, dtype=torch.float32)")
        weight = _first_weight(net)
        if weight is not None and obs.dtype != weight.dtype:
            want = str(weight.dtype).removeprefix("torch.")
            raise TypeError(f"obs is {str(obs.dtype).removeprefix('torch.')}; the network is {want}: "
                            f"use torch.as_tensor(obs, dtype=torch.{want})")
        if obs.dim() == 0 or obs.shape[-1] != self.obs_dim:
            got = f"last dimension {obs.shape[-1]}" if obs.dim() else "no dimensions (a 0-d tensor)"
            raise ValueError(f"obs has {got}, expected {self.obs_dim}")
        # one sum is non-finite if any entry is (a NaN or an inf): about 1.5 us, where
        # isfinite().all() costs about 7 (this runs twice per minibatch of a PPO update).
        # A sum that overflows from finite entries passes the full check.
        if not math.isfinite(obs.sum().item()):
            require_finite(obs=obs)  # names the first NaN or inf and its index

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Action logits, shape (..., n_actions).

        ``obs`` (..., obs_dim) must be a torch tensor of the network's dtype (float32 unless
        converted) and finite: anything else is a TypeError or ValueError, not converted."""
        self._check_obs(obs, self.actor)
        return _forward(self.actor, obs)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        """pi_theta(.|s) for ``obs`` (..., obs_dim): a ``Categorical`` with batch shape (...)."""
        return Categorical(logits=self.logits(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape (...,); ``obs`` as for :meth:`logits`."""
        self._check_obs(obs, self.critic)
        return _forward(self.critic, obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False):
        """Sample (or argmax) actions; returns (actions, logprobs, values), each of shape (...,).

        Samples from the same distribution as ``self.distribution(obs).sample()``, but cheaply:
        this runs at every environment step, where building a ``Categorical`` (which
        validates its arguments) costs more than the arithmetic. Sampling is by inverse CDF:
        the first action whose cumulative probability exceeds u ~ U(0, 1). The logits and the
        value come from :meth:`logits` and :meth:`value`, so a subclass that overrides them
        samples from the policy whose log-probs PPO's ratio uses. ``deterministic`` must be
        True or False (a string such as ``"False"`` would be true: an error, not the argmax).
        """
        require_bool("deterministic", deterministic)
        logits = self.logits(obs)
        logprobs_all = torch.log_softmax(logits, dim=-1)
        if deterministic:
            actions = logits.argmax(-1)
        else:
            cdf = logprobs_all.exp().cumsum(-1)[..., :-1]
            u = torch.rand(cdf.shape[:-1] + (1,), device=cdf.device)
            actions = (cdf < u).sum(-1)
        logprobs = logprobs_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return actions, logprobs, self.value(obs)

    def numpy_policy(self) -> NumpyPolicy:
        """This agent's ``act`` in numpy, for stepping CPU environments (see :class:`NumpyPolicy`)."""
        return NumpyPolicy(self)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor):
        """log pi_theta(a|s), entropy and V(s) for given states and actions (with gradients).

        ``obs`` (..., obs_dim) and ``actions`` (...), one action per observation; each of the
        three results has shape (...).

        The same numbers as ``self.distribution(obs)``'s ``log_prob`` and ``entropy``,
        computed from one log-softmax (no ``Categorical`` to build and validate in the
        inner loop of every PPO update). ``actions`` must hold integers (any integer dtype):
        float actions are refused rather than truncated, so 0.7 does not silently read as 0.
        """
        if not isinstance(obs, torch.Tensor):  # before obs.shape below: a list has none
            self._check_obs(obs, self.actor)
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor of action indices, got {type(actions).__name__}")
        if actions.is_floating_point() or actions.dtype == torch.bool:
            raise TypeError(f"actions must be an integer tensor (action indices), got dtype {actions.dtype}")
        if tuple(actions.shape) != tuple(obs.shape[:-1]):
            # gather() takes an index smaller than its input: 2 actions for 3 observations gave the
            # log-probs of the first 2 observations, silently paired with the wrong actions
            raise ValueError(f"actions must have shape {tuple(obs.shape[:-1])}, one per observation of "
                             f"obs {tuple(obs.shape)}, got {tuple(actions.shape)}")
        logprobs_all = torch.log_softmax(self.logits(obs), dim=-1)
        try:
            logprobs = logprobs_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        except RuntimeError as exc:  # torch's "index 2 is out of bounds for dimension 1 with size 2"
            if not bool(((actions < 0) | (actions >= self.n_actions)).any()):
                raise  # another failure (a device mismatch, say): torch's own message
            raise ValueError(f"actions must be in [0, {self.n_actions}) (this agent has "
                             f"{self.n_actions} actions), got values from {int(actions.min())} to "
                             f"{int(actions.max())}") from exc
        entropy = -(logprobs_all.exp() * logprobs_all).sum(-1)
        return logprobs, entropy, self.value(obs)


def _linear_tanh_stack(mlp) -> bool:
    """Whether ``mlp`` is Linear, Tanh, ..., Linear: the only layout NumpyPolicy computes."""
    layers = list(mlp) if isinstance(mlp, nn.Sequential) else []
    return (len(layers) % 2 == 1
            and all(type(m) is nn.Linear for m in layers[0::2])
            and all(type(m) is nn.Tanh for m in layers[1::2]))


class NumpyPolicy:
    """``ActorCritic.act`` computed with numpy on the agent's current CPU weights.

    Rollout collection calls the policy once per environment step on a handful of
    observations, where each torch call costs microseconds of overhead and numpy's cost
    less: this runs the same MLPs about 2x faster (2.0-2.4x measured for 1-16 observations).
    The weights are read, not copied, so the policy follows the agent; use it only while
    the weights do not change (one rollout).
    Actions are drawn by the same inverse CDF as ``act`` from the same ``torch.rand``
    stream, so a seeded run samples the same actions (up to float rounding of the
    probabilities). It computes the layout :class:`ActorCritic` builds (Linear, Tanh, ...,
    Linear) and refuses an agent whose actor or critic is anything else.
    """

    @staticmethod
    def supports(agent) -> bool:
        """Whether this policy computes exactly what ``agent.act`` does: an ActorCritic on
        the CPU with the stock layout and ``act``, ``value`` and ``logits`` not overridden
        (on its class or on the instance)."""
        if not isinstance(agent, ActorCritic) or next(agent.parameters()).device.type != "cpu":
            return False
        methods = ("act", "value", "logits")
        if any(getattr(type(agent), m) is not getattr(ActorCritic, m) or m in vars(agent)
               for m in methods):
            return False
        return _linear_tanh_stack(agent.actor) and _linear_tanh_stack(agent.critic)

    def __init__(self, agent: ActorCritic):
        if next(agent.parameters()).device.type != "cpu":
            raise ValueError("NumpyPolicy needs the agent's weights on the CPU")
        for name in ("actor", "critic"):
            mlp = getattr(agent, name)
            if not _linear_tanh_stack(mlp):
                layers = ", ".join(type(m).__name__ for m in mlp)
                raise ValueError(
                    f"NumpyPolicy computes Linear, Tanh, ..., Linear stacks; this agent's {name} "
                    f"is [{layers}]. Use agent.act instead (RolloutCollector does so by itself)."
                )
        self.obs_dim = agent.obs_dim
        self.actor = [(m.weight.detach().numpy(), m.bias.detach().numpy())
                      for m in agent.actor if isinstance(m, nn.Linear)]
        self.critic = [(m.weight.detach().numpy(), m.bias.detach().numpy())
                       for m in agent.critic if isinstance(m, nn.Linear)]

    @staticmethod
    def _mlp(layers, x: np.ndarray) -> np.ndarray:
        for weight, bias in layers[:-1]:
            x = np.tanh(x @ weight.T + bias)
        weight, bias = layers[-1]
        return x @ weight.T + bias

    def _check(self, obs) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}), got {obs.shape}")
        return obs

    def value(self, obs) -> np.ndarray:
        """V(s), shape (N,)."""
        return self._mlp(self.critic, self._check(obs))[:, 0]

    def act(self, obs, deterministic: bool = False):
        """(actions, logprobs, values) as numpy arrays of shape (N,), as ``ActorCritic.act``."""
        require_bool("deterministic", deterministic)
        obs = self._check(obs)
        logits = self._mlp(self.actor, obs)
        shifted = logits - logits.max(-1, keepdims=True)
        logprobs_all = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        if deterministic:
            actions = logits.argmax(-1)
        else:
            cdf = np.exp(logprobs_all).cumsum(-1)[:, :-1]
            u = torch.rand(obs.shape[0], 1).numpy()
            actions = (cdf < u).sum(-1)
        logprobs = np.take_along_axis(logprobs_all, actions[:, None], -1)[:, 0]
        return actions, logprobs, self.value(obs)


def require_agent_fits(agent, envs) -> None:
    """ValueError unless an :class:`ActorCritic`'s sizes match the (vector) env's spaces.

    A mismatch otherwise fails deep inside numpy or gymnasium ("could not broadcast input
    array from shape (2,4) into shape (2,3)", "AssertionError: np.int64(2) invalid").
    """
    if not isinstance(agent, ActorCritic):
        return  # other policies: their own business
    obs_space = getattr(envs, "single_observation_space", envs.observation_space)
    act_space = getattr(envs, "single_action_space", envs.action_space)
    obs_dim = obs_space.shape[0] if len(getattr(obs_space, "shape", ()) or ()) == 1 else None
    n_actions = getattr(act_space, "n", None)
    if obs_dim is not None and agent.obs_dim != obs_dim:
        raise ValueError(f"the agent takes {agent.obs_dim} observation features but the env gives "
                         f"{obs_dim}: build it with ActorCritic.for_env(envs)")
    if n_actions is not None and agent.n_actions != int(n_actions):
        raise ValueError(f"the agent chooses among {agent.n_actions} actions but the env has "
                         f"{int(n_actions)}: build it with ActorCritic.for_env(envs)")
