"""PPO for discrete-action gymnasium tasks (CartPole-v1): config, update, trainer, checkpoints.

The loop reads top to bottom as the paper's Algorithm 1:

    for each update:
        collect T steps from N envs with pi_theta_old            (rollout.RolloutCollector)
        compute A_hat_t and the critic's targets                 (advantages.compute_gae)
        for K epochs, for each minibatch of size M:
            maximise L^CLIP - c1 L^VF + c2 S[pi_theta]           (ppo_loss / ppo_update)

plus the details that make it work in practice (CleanRL's "37 implementation details"):
per-minibatch advantage normalisation, a clipped value loss, gradient-norm clipping and a
linearly annealed learning rate. Every update records its diagnostics (approx KL, clip
fraction, explained variance, entropy, losses) in the returned history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import numbers
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ppo_edu._checks import (
    SEED_LIMIT,
    require_device,
    require_finite,
    require_same_shape,
    require_tensor,
)
from ppo_edu.advantages import compute_gae
from ppo_edu.agents import ActorCritic
from ppo_edu.objectives import approx_kl, clipped_surrogate, cpi_surrogate
from ppo_edu.optim import adam
from ppo_edu.rollout import Rollout, RolloutCollector, make_cartpole_envs

AdvantageFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class PPOConfig:
    """Every knob of the trainer, with defaults that solve CartPole-v1.

    Close to rl-baselines3-zoo's tuned CartPole settings (8 envs x 32 steps, gamma 0.98,
    lambda 0.8, linearly annealed learning rate and clip range), with half the epochs at
    three times the learning rate. Measured on 2026-12-03 with ``benchmarks/cartpole.py``'s
    evaluation (20 episodes, the most likely action) every 2,048 env steps: the mean first
    reaches 475 after a median of 8k env steps over seeds 0-19 (2k-27k), and at the end of
    the 60k steps it is 500 on nine of seeds 0-9 and 494 on seed 6. "First reaches" depends
    on how often one looks: evaluated after every update (256 steps), the median is 5k.
    Slower annealing does not help: with ``total_timesteps=100_000`` the median over seeds
    0-19 is 12k (``benchmarks/cartpole.py --only ours --seeds $(seq 0 19) --budget B``).
    These figures are this machine's (AVX-512): on another CPU the same seed takes another
    path, and the last agent can be far from the best (seed 0 ends at 330 with numpy's
    OpenBLAS forced onto AVX2 kernels, after evaluating at 500 at 22.5k steps). Keep the
    best agent with :class:`ppo_edu.evaluate.EvalTracker`.
    """

    env_id: str = "CartPole-v1"
    """gymnasium id; the action space must be Discrete."""
    seed: int = 0
    """seeds torch, the envs' initial states and the minibatch shuffling."""
    total_timesteps: int = 60_000
    """env steps to train for (rounded down to whole rollouts)."""
    num_envs: int = 8
    """N, environments stepped in parallel."""
    num_steps: int = 32
    """T, steps per environment per rollout; the batch is N * T transitions."""
    gamma: float = 0.98
    """discount, in (0, 1]."""
    lam: float = 0.8
    """GAE lambda, in [0, 1]: 0 is the TD residual, 1 the Monte-Carlo return minus V."""
    learning_rate: float = 3e-3
    """Adam step size at the start."""
    anneal_lr: bool = True
    """decay the learning rate linearly towards 0 (update u of U, counting from 0, runs at
    1 - u/U of it: the first at the full rate, the last at 1/U; the history's ``update``
    counts from 1). U updates, not the K epochs of each."""
    update_epochs: int = 10
    """K, passes over each batch."""
    minibatch_size: int = 256
    """M, transitions per gradient step; must divide N * T."""
    clip_epsilon: float = 0.2
    """epsilon of L^CLIP (and of the value clipping); > 0."""
    anneal_clip: bool = True
    """decay epsilon linearly towards 0 with the learning rate (rl-baselines3-zoo does)."""
    use_clipping: bool = True
    """False optimises L^CPI instead of L^CLIP (the ablation)."""
    clip_value_loss: bool = True
    """PPO2's pessimistic value loss: a state stops pulling once its V has moved clip_epsilon
    towards the target (no cap on how far V moves: shared weights and Adam carry it on)."""
    normalize_advantages: bool = True
    """standardise A_hat within each minibatch."""
    value_coef: float = 0.5
    """c1, weight of the value loss."""
    entropy_coef: float = 0.0
    """c2, weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """clip the global gradient norm to this."""
    hidden: int = 64
    """width of the actor's and the critic's two hidden layers."""
    torch_threads: int | None = 1
    """torch CPU threads while training (restored after); tiny MLPs run fastest on one."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"PPOConfig.{name} {why}, got {getattr(self, name)!r}")

        # counts: whole numbers. An integral float such as 1e5 (how rl-baselines3-zoo writes
        # n_timesteps) becomes an int; 2.5 epochs or "100" steps are errors, here, not later.
        for name in ("num_envs", "num_steps", "update_epochs", "minibatch_size", "hidden",
                     "total_timesteps", "seed", "torch_threads"):
            value = getattr(self, name)
            if value is None and name == "torch_threads":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise bad(name, "must be a whole number")
            if isinstance(value, (float, np.floating)) and not (
                    math.isfinite(value) and float(value).is_integer()):
                raise bad(name, "must be a whole number")
            setattr(self, name, int(value))
        # rates and coefficients: real numbers. "0.99" (a string) fails a comparison with a
        # TypeError, a tensor or a bool would pass here and fail (or mean nothing) later
        for name in ("gamma", "lam", "learning_rate", "clip_epsilon", "value_coef", "entropy_coef",
                     "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise bad(name, "must be a real number")
            if math.isnan(value):
                raise bad(name, "must be a number, not NaN")
            setattr(self, name, float(value))
        if not isinstance(self.env_id, str) or not self.env_id.strip():
            raise bad("env_id", "must be a gymnasium environment id (a non-empty string)")
        if not 0 <= self.seed < SEED_LIMIT:
            raise bad("seed", "must be >= 0 and < 2**64 (gymnasium seeds only non-negative "
                              "integers, torch at most 2**64 - 1)")
        if not (0.0 < self.gamma <= 1.0):
            raise bad("gamma", "must be in (0, 1]")
        if not (0.0 <= self.lam <= 1.0):
            raise bad("lam", "must be in [0, 1]")
        if not (self.clip_epsilon > 0):
            raise bad("clip_epsilon", "must be > 0")
        for name in ("num_envs", "num_steps", "update_epochs", "minibatch_size", "hidden",
                     "total_timesteps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.total_timesteps < self.batch_size:
            raise bad("total_timesteps", f"must be at least one batch (num_envs * num_steps = "
                                         f"{self.batch_size}; fewer trains no update)")
        if self.batch_size % self.minibatch_size != 0:
            raise bad("minibatch_size", f"must divide the batch size num_envs * num_steps = "
                                        f"{self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise bad("learning_rate", "must be a finite number > 0")
        if not (self.max_grad_norm > 0):
            raise bad("max_grad_norm", "must be > 0")
        for name in ("value_coef", "entropy_coef"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "must be a finite number >= 0")
        for name in ("anneal_lr", "anneal_clip", "use_clipping", "clip_value_loss",
                     "normalize_advantages"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise bad(name, "must be True or False")  # "False" (a string) would be true
        if self.normalize_advantages and self.minibatch_size < 2:
            # (A - mean) / std over one sample is 0: the policy would never move
            raise bad("minibatch_size", "must be >= 2 with normalize_advantages=True (the "
                                        "advantages of a 1-sample minibatch normalise to 0)")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise bad("torch_threads", "must be >= 1 or None")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def replace(self, **changes) -> "PPOConfig":
        """A copy with some fields changed (validated again)."""
        return PPOConfig(**{**asdict(self), **changes})


# --------------------------------------------------------------------------- the pieces


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) over the minibatch: the same step size whatever the reward scale.
    Any shape (one mean and std over every entry); returns the same shape."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       epsilon: float | None = 0.2) -> torch.Tensor:
    """0.5 E[max((V - R)^2, (V_clip - R)^2)], V_clip = V_old + clip(V - V_old, -eps, eps).

    The max keeps the update pessimistic, as in L^CLIP: once V has moved more than eps
    from V_old towards R, moving further earns no gradient (the clipped error is the larger);
    a V that moved away from R, or overshot it by more than the clipped error, keeps the
    gradient of (V - R)^2. eps is in reward units. ``epsilon=None`` gives the plain
    0.5 E[(V - R)^2]. All inputs have shape (B,).
    """
    # the same shape, or a critic's (B, 1) output broadcasts against (B,) returns into a
    # (B, B) table of every value against every return: a loss that trains on nonsense
    for name, value in (("values", values), ("old_values", old_values), ("returns", returns)):
        require_tensor(name, value)  # numpy failed inside torch.clamp, naming no argument
    require_same_shape(values=values, old_values=old_values, returns=returns)
    if values.numel() == 0:  # the mean of nothing is NaN
        raise ValueError("values is empty: there are no samples to average the value loss over")
    if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real)
                                or not epsilon > 0):
        # clamp(x, 0.2, -0.2) is -0.2 everywhere: a negative epsilon gives a wrong loss, no error
        raise ValueError(f"epsilon must be a number > 0 or None (no clipping), got {epsilon!r}")
    unclipped = (values - returns) ** 2
    if epsilon is None:
        return 0.5 * unclipped.mean()
    v_clipped = old_values + torch.clamp(values - old_values, -epsilon, epsilon)
    return 0.5 * torch.maximum(unclipped, (v_clipped - returns) ** 2).mean()


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[targets - predictions] / Var[targets]: 1 when the predictions match the targets
    up to a constant offset (a bias does not show here; the value loss shows it), 0 no better
    than predicting the mean, negative worse. NaN when the targets have no variance.
    Any shape, the same for both: one number over every entry."""
    for name, value in (("predictions", predictions), ("targets", targets)):
        require_tensor(name, value)
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    require_same_shape(predictions=predictions, targets=targets)  # (B, 1) vs (B,) would broadcast
    if targets.numel() == 0:
        raise ValueError("targets is empty: explained variance needs at least one sample")
    # a NaN came back as NaN, which reads as "the targets do not vary"
    require_finite(predictions=predictions, targets=targets)
    var_targets = targets.var(unbiased=False)
    if var_targets <= 0:
        return float("nan")
    return float(1.0 - (targets - predictions).var(unbiased=False) / var_targets)


def ppo_loss(agent: ActorCritic, batch: dict[str, torch.Tensor], config: PPOConfig,
             check: bool = True):
    """The loss of one minibatch, -(L^CLIP - c1 L^VF + c2 S), and its diagnostics.

    ``batch`` holds ``obs`` of shape (M, obs_dim) and (M,)-shaped ``actions``, ``logprobs`` (of
    pi_theta_old), ``values`` (V_old), ``advantages`` and ``returns``. ``check=False``
    skips the objectives' per-call input checks (:func:`ppo_update` checks once per update).
    """
    logprobs, entropy, values = agent.evaluate_actions(batch["obs"], batch["actions"])
    advantages = batch["advantages"]
    if config.normalize_advantages:
        advantages = normalize_advantages(advantages)
    if config.use_clipping:
        policy_objective, clip_fraction = clipped_surrogate(
            logprobs, batch["logprobs"], advantages, config.clip_epsilon, check=check)
    else:
        policy_objective = cpi_surrogate(logprobs, batch["logprobs"], advantages, check=check)
        with torch.no_grad():
            ratio = torch.exp(logprobs - batch["logprobs"])
            clip_fraction = ((ratio - 1).abs() > config.clip_epsilon).float().mean()
    value_loss = clipped_value_loss(values, batch["values"], batch["returns"],
                                    config.clip_epsilon if config.clip_value_loss else None)
    entropy = entropy.mean()
    loss = -policy_objective + config.value_coef * value_loss - config.entropy_coef * entropy
    with torch.no_grad():
        kl = approx_kl(logprobs, batch["logprobs"], check=check)
    stats = {"policy_loss": -policy_objective.detach(), "value_loss": value_loss.detach(),
             "entropy": entropy.detach(), "approx_kl": kl, "clip_fraction": clip_fraction}
    return loss, stats


def ppo_update(agent: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout,
               advantages: torch.Tensor, returns: torch.Tensor, config: PPOConfig,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """K epochs of minibatch gradient steps on one rollout; returns the mean diagnostics.

    ``advantages`` and ``returns`` have the rollout's shape (T, N); they are flattened with
    the rest of the batch, reshuffled every epoch and cut into minibatches of
    ``config.minibatch_size``.
    """
    # (T, N) like the rollout: a transposed (N, T) would reshape without complaint and pair
    # each advantage with another step's transition
    for name, value in (("advantages", advantages), ("returns", returns)):
        require_tensor(name, value)
        if not value.is_floating_point():  # integer advantages failed inside normalisation's mean()
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    require_same_shape(rewards=rollout.rewards, advantages=advantages, returns=returns)
    data = rollout.flat()
    data["advantages"] = advantages.reshape(-1)
    data["returns"] = returns.reshape(-1)
    for name, value in data.items():  # checked once here, not in every minibatch's loss
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"PPO update got non-finite {name} (NaN or inf); "
                                     "refusing to train on it")
    B = data["actions"].shape[0]
    if B % config.minibatch_size != 0:  # else the last minibatch is a remainder, or all of B silently
        raise ValueError(f"config.minibatch_size = {config.minibatch_size} must divide the rollout's "
                         f"{B} transitions (the config's own batch is num_envs * num_steps = "
                         f"{config.batch_size})")
    params = list(agent.parameters())
    names, history = None, []
    for _ in range(config.update_epochs):
        if config.minibatch_size == B:  # one minibatch, the whole batch: order cannot matter
            minibatches = [data]
        else:
            order = torch.randperm(B, generator=generator, device=data["actions"].device)
            minibatches = [{k: v[order[start:start + config.minibatch_size]] for k, v in data.items()}
                           for start in range(0, B, config.minibatch_size)]
        for batch in minibatches:
            loss, stats = ppo_loss(agent, batch, config, check=False)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm, foreach=True)
            if not bool(torch.isfinite(grad_norm)):  # before the step, or every weight turns NaN
                bad = [k for k, v in stats.items() if not bool(torch.isfinite(torch.as_tensor(v)))]
                raise FloatingPointError(
                    f"PPO update produced non-finite {', '.join(bad) or 'gradients'} (loss "
                    f"{loss.item()}, gradient norm {grad_norm.item()}); refusing to step")
            optimizer.step()
            names = names or list(stats)
            history.append(torch.stack([torch.as_tensor(stats[k], dtype=torch.float32) for k in names]))
    # one stack and one sync per update, instead of one per statistic and minibatch
    out = dict(zip(names, torch.stack(history).mean(0).tolist()))
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:  # a NaN loss would silently turn every weight into NaN: stop here instead
        raise FloatingPointError(f"PPO update produced non-finite {', '.join(bad)}: {out}")
    out["explained_variance"] = explained_variance(data["values"], data["returns"])
    return out


# --------------------------------------------------------------------------- the trainer


class TrainResult(NamedTuple):
    agent: ActorCritic
    history: list[dict]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch CPU threads, then restore the previous number."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_envs(config: PPOConfig) -> gym.vector.VectorEnv:
    """The training envs (SAME_STEP autoreset), refusing non-discrete action spaces."""
    envs = make_cartpole_envs(config.num_envs, env_id=config.env_id)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        space = envs.single_action_space
        envs.close()
        raise ValueError(f"PPOConfig.env_id {config.env_id!r} has a "
                         f"{type(space).__name__} action space; this PPO needs a Discrete one")
    return envs


def make_optimizer(agent: ActorCritic, config: PPOConfig) -> torch.optim.Adam:
    """Adam with eps 1e-5 (as in the PPO implementations); the fused kernel where torch has
    it, which updates all parameters in one call instead of ~10 small ops per tensor."""
    return adam(agent.parameters(), config.learning_rate)


def _advantage_pair(out) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``advantage_fn`` returned, if it is a pair of floating-point tensors (a learner's GAE
    returning one tensor, None or numpy arrays failed with "too many values to unpack" or
    "'numpy.ndarray' object has no attribute 'detach'")."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"advantage_fn must return a pair (advantages, returns), got {got}")
    for name, value in zip(("advantages", "returns"), out):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"advantage_fn returned {name} as {got}; it must be a floating-point "
                            "torch.Tensor of the rollout's shape (T, N)")
    return out[0], out[1]


def _check_advantage_fn(advantage_fn) -> None:
    """TypeError now, before any env is built or rollout collected, unless ``advantage_fn``
    can be called as :func:`train_ppo` calls it (else "got multiple values for argument
    'gamma'", or "'int' object is not callable", came after the first rollout)."""
    if not callable(advantage_fn):
        raise TypeError(f"advantage_fn must be a function like ppo_edu.advantages.compute_gae, got "
                        f"{type(advantage_fn).__name__} {advantage_fn!r}")
    try:
        signature = inspect.signature(advantage_fn)
    except (TypeError, ValueError):  # some builtins have no signature to check: call and see
        return
    try:
        signature.bind(*range(6), gamma=0.99, lam=0.95)
    except TypeError as exc:
        name = getattr(advantage_fn, "__name__", type(advantage_fn).__name__)
        raise TypeError(
            f"advantage_fn {name}{signature} cannot be called as train_ppo calls it, "
            "advantage_fn(rewards, values, terminated, truncated, final_values, next_values, "
            f"gamma=..., lam=...) (compute_gae's signature): {exc}") from None


def train_ppo(config: PPOConfig | None = None, advantage_fn: AdvantageFn = compute_gae, *,
              agent: ActorCritic | None = None, device: torch.device | str = "cpu",
              progress: bool = True,
              callback: Callable[[ActorCritic, dict], bool | None] | None = None) -> TrainResult:
    """Train an actor-critic with PPO; returns ``(agent, history)``.

    ``advantage_fn(rewards, values, terminated, truncated, final_values, next_values,
    gamma=..., lam=...) -> (advantages, returns)`` has :func:`ppo_edu.advantages.compute_gae`'s
    signature, so a learner's own GAE can drive the training.

    It is checked before anything is built: a non-callable, or one that cannot be called
    that way (``discounted_returns`` takes no ``values`` and no ``lam``), is a TypeError.

    ``agent`` (optional) is the agent to train: it is moved to ``device`` and trained in
    place (the returned agent is the same object), and its own sizes are used, so
    ``config.hidden`` is ignored; without one, a new :class:`ActorCritic` with
    ``config.hidden`` units is built for the env.

    ``history`` has one dict per update: ``env_steps``, ``wall_time`` (seconds since the
    start), ``episode_return`` (mean return of the episodes that ended in this rollout,
    NaN if none did), the losses and the diagnostics. ``callback(agent, record)`` runs
    after each update; returning True stops training early. ``config`` is validated again
    here, so fields assigned after it was made are checked too. Training starts with
    ``torch.manual_seed(config.seed)``: the caller's global torch RNG is reset (and then
    advanced by the training's own draws).
    """
    config = PPOConfig() if config is None else config
    if not isinstance(config, PPOConfig):
        raise TypeError(f"config must be a PPOConfig (e.g. PPOConfig(seed=0)), got "
                        f"{type(config).__name__}")
    # a field assigned after construction (config.total_timesteps = 100) skipped
    # __post_init__'s checks: run them again, on a copy that the caller's config does not see
    config = dataclasses.replace(config)
    _check_advantage_fn(advantage_fn)
    device = require_device(device)
    start = time.perf_counter()
    with torch_threads(config.torch_threads):
        torch.manual_seed(config.seed)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        envs = make_envs(config)
        try:
            envs.action_space.seed(config.seed)
            agent = (agent or ActorCritic.for_env(envs, hidden=config.hidden)).to(device)
            optimizer = make_optimizer(agent, config)
            collector = RolloutCollector(envs, agent, seed=config.seed, device=device)
            history: list[dict] = []
            bar = tqdm(total=config.num_updates * config.batch_size, unit="step",
                       desc="PPO", disable=not progress, mininterval=0.5)
            recent: list[float] = []
            for update in range(config.num_updates):
                frac = 1.0 - update / config.num_updates
                if config.anneal_lr:
                    optimizer.param_groups[0]["lr"] = frac * config.learning_rate
                step_config = config
                if config.anneal_clip:  # a copy: the config the caller holds stays as it was
                    step_config = dataclasses.replace(config, clip_epsilon=frac * config.clip_epsilon)
                rollout = collector.collect(config.num_steps)
                advantages, returns = _advantage_pair(advantage_fn(
                    rollout.rewards, rollout.values, rollout.terminated, rollout.truncated,
                    rollout.final_values, rollout.next_values, gamma=config.gamma, lam=config.lam))
                stats = ppo_update(agent, optimizer, rollout, advantages.detach(),
                                   returns.detach(), step_config, generator)
                recent = (recent + rollout.episode_returns)[-20:]
                record = {
                    "update": update + 1,
                    "env_steps": (update + 1) * config.batch_size,
                    "wall_time": time.perf_counter() - start,
                    "episode_return": (float(np.mean(rollout.episode_returns))
                                       if rollout.episode_returns else float("nan")),
                    "episodes": len(rollout.episode_returns),
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "clip_epsilon": step_config.clip_epsilon,
                    **stats,
                }
                history.append(record)
                bar.update(config.batch_size)
                if recent:
                    bar.set_postfix(ret=f"{np.mean(recent):.0f}", kl=f"{stats['approx_kl']:.3f}",
                                    refresh=False)
                if callback is not None and callback(agent, record):
                    break
            bar.close()
        finally:
            envs.close()
    return TrainResult(agent, history)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, agent: ActorCritic, config: PPOConfig | None = None) -> Path:
    """Write the agent's weights (and the config) to a ``.safetensors`` file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"obs_dim": str(agent.obs_dim), "n_actions": str(agent.n_actions),
                "hidden": str(agent.hidden)}
    if config is not None:
        metadata["config"] = json.dumps(asdict(config))
    tensors = {k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(agent, config or None)``."""
    from safetensors import safe_open

    device = require_device(device)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors' own error names neither the file nor the problem
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    missing = {"obs_dim", "n_actions", "hidden"} - set(metadata)
    if missing:
        raise ValueError(f"{path} is not a ppo_edu checkpoint (metadata lacks {sorted(missing)})")
    agent = ActorCritic(int(metadata["obs_dim"]), int(metadata["n_actions"]),
                        int(metadata["hidden"]))
    agent.load_state_dict(load_file(str(path)))
    config = None
    if "config" in metadata:
        known = {f.name for f in fields(PPOConfig)}
        recorded = json.loads(metadata["config"])
        unknown = sorted(set(recorded) - known)
        if unknown:  # a later version's settings: load the rest, but say what is left out
            warnings.warn(f"{path}: this version's PPOConfig has no field {', '.join(unknown)}; "
                          "the returned config leaves them out", stacklevel=2)
        config = PPOConfig(**{k: v for k, v in recorded.items() if k in known})
    return agent.to(device), config


__all__ = [
    "PPOConfig", "TrainResult", "train_ppo", "ppo_update", "ppo_loss", "clipped_value_loss",
    "normalize_advantages", "explained_variance", "save_checkpoint", "load_checkpoint",
    "make_envs", "torch_threads",
]
