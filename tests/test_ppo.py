"""The PPO trainer: config validation, reproducibility, the update's pieces, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppo_edu.advantages import compute_gae
from ppo_edu.agents import ActorCritic
from ppo_edu.ppo import (
    PPOConfig,
    clipped_value_loss,
    explained_variance,
    load_checkpoint,
    normalize_advantages,
    ppo_loss,
    ppo_update,
    save_checkpoint,
    train_ppo,
)
from ppo_edu.rollout import Rollout

TINY = dict(total_timesteps=512, num_envs=4, num_steps=32, minibatch_size=64, update_epochs=2)


@pytest.fixture(scope="module")
def tiny_run():
    return train_ppo(PPOConfig(**TINY, seed=7), progress=False)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("field,value", [
    ("gamma", 0.0), ("gamma", 1.5), ("gamma", -0.5),
    ("lam", -0.1), ("lam", 1.01),
    ("clip_epsilon", 0.0), ("clip_epsilon", -0.2),
    ("minibatch_size", 100),  # does not divide 8 * 32 = 256
    ("num_envs", 0), ("update_epochs", 0), ("learning_rate", 0.0), ("max_grad_norm", 0.0),
    ("learning_rate", float("inf")), ("value_coef", float("nan")), ("value_coef", -0.5),
    ("entropy_coef", float("inf")),
    ("anneal_lr", "no"), ("use_clipping", "False"), ("normalize_advantages", 1),  # not bools
    ("anneal_clip", "no"), ("clip_value_loss", 0),  # every switch, not only some
    ("max_grad_norm", True),  # True > 0: would clip to a norm of 1 and say nothing
    ("torch_threads", 0),  # torch.set_num_threads(0) is an error deep in training
    ("env_id", "   "),  # blank: gymnasium's "No registered env" names no field
])
def test_invalid_config_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"PPOConfig\.{field}\b"):
        PPOConfig(**{field: value})


@pytest.mark.parametrize("field,value", [
    ("total_timesteps", 1e4 + 0.5), ("update_epochs", 2.5), ("num_envs", 8.1),
    ("minibatch_size", float("nan")), ("total_timesteps", float("inf")),
    ("num_steps", "32"), ("update_epochs", True), ("hidden", None), ("seed", 0.5),
    ("torch_threads", 1.5),
])
def test_counts_must_be_whole_numbers(field, value):
    with pytest.raises(ValueError, match=rf"PPOConfig\.{field} must be a whole number"):
        PPOConfig(**{field: value})


def test_integral_floats_become_ints():
    # rl-baselines3-zoo writes n_timesteps as 1e5: accept it, and store an int
    config = PPOConfig(total_timesteps=1e4, update_epochs=4.0, num_envs=np.int64(4),
                       minibatch_size=128.0, seed=np.float32(3.0))
    assert config.total_timesteps == 10_000 and type(config.total_timesteps) is int
    assert config.update_epochs == 4 and type(config.update_epochs) is int
    assert type(config.num_envs) is int and type(config.seed) is int
    assert config.num_updates == 10_000 // (4 * 32)
    assert PPOConfig(torch_threads=None).torch_threads is None


def test_boundary_values_are_valid():
    c = PPOConfig(gamma=1.0, lam=0.0)
    assert (c.gamma, c.lam) == (1.0, 0.0)
    c = PPOConfig(lam=1.0, minibatch_size=8 * 32)
    assert c.lam == 1.0 and c.minibatch_size == c.num_envs * c.num_steps  # one minibatch: the batch


def test_a_one_sample_minibatch_is_refused_when_advantages_are_normalised():
    """(A - mean) / std over one sample is 0: the actor's weights never moved, with no error."""
    with pytest.raises(ValueError, match=r"PPOConfig\.minibatch_size must be >= 2 with normalize_advantages"):
        PPOConfig(minibatch_size=1)
    assert PPOConfig(minibatch_size=1, normalize_advantages=False).minibatch_size == 1


def test_a_two_sample_minibatch_is_allowed_with_normalised_advantages():
    """Two samples have a standard deviation: only the one-sample minibatch is refused."""
    config = PPOConfig(num_envs=1, num_steps=2, total_timesteps=2, minibatch_size=2)
    assert config.minibatch_size == 2 and config.normalize_advantages


def test_minibatch_size_error_says_what_the_batch_is():
    with pytest.raises(ValueError, match="num_envs \\* num_steps = 512"):
        PPOConfig(num_envs=8, num_steps=64, minibatch_size=100)


def test_non_discrete_action_space_is_refused():
    with pytest.raises(ValueError, match=r"PPOConfig\.env_id.*Box.*Discrete"):
        train_ppo(PPOConfig(env_id="Pendulum-v1", **TINY), progress=False)


def test_seeds_are_the_integers_torch_and_gymnasium_both_take():
    """torch seeds at most 2**64 - 1: a larger seed passed here and then failed in
    torch.manual_seed with "Overflow when unpacking long long", which names no field."""
    for bad in (2**64, 1e20, -1):
        with pytest.raises(ValueError, match=r"PPOConfig\.seed must be >= 0 and < 2\*\*64"):
            PPOConfig(seed=bad)
    config = PPOConfig(num_envs=2, num_steps=8, minibatch_size=16, total_timesteps=16,
                       update_epochs=1, seed=2**64 - 1)
    assert len(train_ppo(config, progress=False).history) == 1  # the largest trains


def test_a_budget_below_one_batch_is_refused_naming_the_batch_size():
    """total_timesteps // (num_envs * num_steps) = 0 updates: an empty history, no error."""
    with pytest.raises(ValueError, match=r"PPOConfig\.total_timesteps must be at least one batch "
                                         r"\(num_envs \* num_steps = 128; fewer trains no update\), got 100"):
        PPOConfig(num_envs=4, num_steps=32, minibatch_size=64, total_timesteps=100)


@pytest.mark.parametrize("field,value", [
    ("total_timesteps", 100),  # below one batch (128): ran 0 updates, returned an empty history
    ("entropy_coef", -1.0),  # trained, minimising the entropy
    ("normalize_advantages", "False"),  # trained, normalising (a non-empty string is true)
    ("update_epochs", 0),  # "stack expects a non-empty TensorList"
    ("seed", 2**64),  # "Overflow when unpacking long long"
])
def test_train_ppo_checks_a_config_changed_after_construction(field, value):
    """A notebook's ``config.total_timesteps = 100`` skips __post_init__. With anneal_clip=True
    the per-update copy happened to check most fields; with anneal_clip=False nothing did."""
    config = PPOConfig(**TINY, anneal_clip=False)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=rf"PPOConfig\.{field}\b"):
        train_ppo(config, progress=False)


def test_train_ppo_uses_a_valid_change_made_after_construction():
    config = PPOConfig(**TINY)
    config.total_timesteps = 256.0  # two batches of 128, as rl-baselines3-zoo writes counts
    _, history = train_ppo(config, progress=False)
    assert [h["env_steps"] for h in history] == [128, 256]
    assert config.total_timesteps == 256.0 and config.clip_epsilon == 0.2  # the caller's, as it was


def test_replace_validates_again():
    assert PPOConfig().replace(lam=1.0).lam == 1.0
    with pytest.raises(ValueError, match="lam"):
        PPOConfig().replace(lam=2.0)


# --------------------------------------------------------------------------- the pieces


def test_normalize_advantages_gives_zero_mean_unit_std():
    adv = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 10.0]))
    assert adv.mean().abs() < 1e-6 and (adv.std() - 1).abs() < 1e-4


def test_clipped_value_loss_ignores_moves_beyond_epsilon_in_the_target_direction():
    old = torch.tensor([0.0])
    target = torch.tensor([5.0])
    far = torch.tensor([3.0], requires_grad=True)  # moved 3 > eps towards the target
    loss = clipped_value_loss(far, old, target, epsilon=0.2)
    loss.backward()
    # max((3-5)^2, (0.2-5)^2) = 23.04: the clipped term wins and has no gradient in V
    assert loss.item() == pytest.approx(0.5 * 4.8 ** 2)
    assert far.grad.item() == 0.0


def test_normalize_advantages_centres_one_sample_and_standardises_two():
    # one sample has no std: it centres to 0 (A - mean); two already divide by their unbiased std
    assert normalize_advantages(torch.tensor([5.0])).tolist() == [0.0]
    adv = normalize_advantages(torch.tensor([1.0, 3.0]))
    assert adv.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-6)


def test_clipped_value_loss_clips_downward_moves_too():
    """The clip range is symmetric: V that fell 3 past V_old towards a lower target is held
    at V_old - eps as well (a one-sided clamp would compare against V_old itself)."""
    old, target = torch.tensor([0.0]), torch.tensor([-5.0])
    far = torch.tensor([-3.0], requires_grad=True)
    loss = clipped_value_loss(far, old, target, epsilon=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * 4.8 ** 2) and far.grad.item() == 0.0


def test_clipped_value_loss_never_hides_a_worse_prediction():
    old, target = torch.tensor([0.0]), torch.tensor([5.0])
    away = torch.tensor([-1.0], requires_grad=True)  # moved away from the target
    loss = clipped_value_loss(away, old, target, epsilon=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * 36.0) and away.grad.item() < 0


def test_unclipped_value_loss_is_half_mean_squared_error():
    v, r = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert clipped_value_loss(v, v * 0, r, epsilon=None).item() == pytest.approx(1.25)


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(y, y.mean()), y) == pytest.approx(0.0)
    assert explained_variance(-y, y) < 0
    assert math.isnan(explained_variance(y, torch.ones(4)))


def _agent_and_samples(n: int):
    """A seeded agent, n random CartPole-sized states, random actions, and the agent's own
    log-probabilities and values of them (what a rollout would store as pi_old's)."""
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    obs, actions = torch.randn(n, 4), torch.randint(0, 2, (n,))
    with torch.no_grad():
        logprobs, _, values = agent.evaluate_actions(obs, actions)
    return agent, obs, actions, logprobs, values


@pytest.mark.parametrize("value_coef,entropy_coef", [(0.5, 0.0), (1.5, 0.0), (0.0, 0.2), (0.7, 0.05)])
def test_ppo_loss_is_minus_surrogate_plus_c1_value_loss_minus_c2_entropy(value_coef, entropy_coef):
    agent, obs, actions, logprobs, values = _agent_and_samples(32)
    batch = dict(obs=obs, actions=actions, logprobs=logprobs, values=values,
                 advantages=torch.randn(32), returns=5 * torch.randn(32))
    loss, stats = ppo_loss(agent, batch, PPOConfig(value_coef=value_coef, entropy_coef=entropy_coef))
    assert stats["value_loss"] > 1 and stats["entropy"] > 0.5  # each term big enough to show
    expected = (stats["policy_loss"] + value_coef * stats["value_loss"]
                - entropy_coef * stats["entropy"])
    assert loss.item() == pytest.approx(float(expected), rel=1e-6, abs=1e-6)


def test_ppo_loss_at_theta_old_has_ratio_one_and_no_clipping():
    agent, obs, actions, logprobs, values = _agent_and_samples(32)
    batch = dict(obs=obs, actions=actions, logprobs=logprobs, values=values,
                 advantages=torch.randn(32), returns=torch.randn(32))
    for use_clipping in (True, False):
        loss, stats = ppo_loss(agent, batch, PPOConfig(use_clipping=use_clipping))
        assert stats["clip_fraction"] == 0 and abs(stats["approx_kl"]) < 1e-6
        # normalised advantages average to zero, and r = 1, so the surrogate is ~0
        assert abs(stats["policy_loss"]) < 1e-5
        assert loss.requires_grad


def _moved_batch(advantage_shift: float = 0.0):
    """A minibatch whose old log-probabilities and values differ from the agent's current ones
    (as after a few gradient steps): ratios on both sides of 1 +- eps, values moved both ways."""
    agent, obs, actions, logprobs, values = _agent_and_samples(32)
    shift = torch.linspace(-0.4, 0.8, 32)  # log r = shift: r from 0.67 to 2.2
    batch = dict(obs=obs, actions=actions, logprobs=logprobs - shift, values=values - 3 * shift,
                 advantages=torch.randn(32) + advantage_shift, returns=values + 2.0)
    return agent, batch, logprobs


def test_ppo_loss_reports_k3_kl_of_pi_old_to_pi_and_a_two_sided_clip_fraction():
    """approx_kl is k3 with r = pi / pi_old (swapping the two gives another number), and the
    clip fraction counts ratios below 1 - eps as well as above 1 + eps, with L^CPI too."""
    agent, batch, logprobs = _moved_batch()
    log_ratio = logprobs - batch["logprobs"]
    ratio = log_ratio.exp()
    expected_kl = float((torch.expm1(log_ratio) - log_ratio).mean())
    swapped_kl = float((torch.expm1(-log_ratio) + log_ratio).mean())
    assert abs(expected_kl - swapped_kl) > 1e-3  # the test can tell the directions apart
    expected_fraction = float(((ratio - 1).abs() > 0.2).float().mean())
    assert 0 < float(((ratio - 1) < -0.2).float().mean()) < expected_fraction  # both sides occur
    for use_clipping in (True, False):
        _, stats = ppo_loss(agent, batch, PPOConfig(use_clipping=use_clipping))
        assert float(stats["approx_kl"]) == pytest.approx(expected_kl, rel=1e-5)
        assert float(stats["clip_fraction"]) == pytest.approx(expected_fraction)


def test_ppo_loss_honours_use_clipping_normalize_advantages_and_clip_value_loss():
    """Each switch changes the loss it names: L^CPI instead of L^CLIP, raw advantages, and
    the plain squared error instead of PPO2's clipped value loss."""
    from ppo_edu.objectives import clipped_surrogate, cpi_surrogate

    agent, batch, logprobs = _moved_batch(advantage_shift=3.0)
    normalised = normalize_advantages(batch["advantages"])
    _, stats = ppo_loss(agent, batch, PPOConfig())
    clip = clipped_surrogate(logprobs, batch["logprobs"], normalised, 0.2).objective
    cpi = cpi_surrogate(logprobs, batch["logprobs"], normalised)
    assert abs(float(clip - cpi)) > 1e-3
    assert float(stats["policy_loss"]) == pytest.approx(-float(clip), rel=1e-5)
    _, stats = ppo_loss(agent, batch, PPOConfig(use_clipping=False))
    assert float(stats["policy_loss"]) == pytest.approx(-float(cpi), rel=1e-5)
    _, stats = ppo_loss(agent, batch, PPOConfig(normalize_advantages=False))
    raw = clipped_surrogate(logprobs, batch["logprobs"], batch["advantages"], 0.2).objective
    assert float(stats["policy_loss"]) == pytest.approx(-float(raw), rel=1e-5) and float(raw) > 1

    values = agent.evaluate_actions(batch["obs"], batch["actions"])[2].detach()
    clipped = clipped_value_loss(values, batch["values"], batch["returns"], epsilon=0.2)
    plain = clipped_value_loss(values, batch["values"], batch["returns"], epsilon=None)
    assert float(clipped - plain) > 0.1
    _, stats = ppo_loss(agent, batch, PPOConfig(clip_value_loss=True, clip_epsilon=0.2))
    assert float(stats["value_loss"]) == pytest.approx(float(clipped), rel=1e-5)
    _, stats = ppo_loss(agent, batch, PPOConfig(clip_value_loss=False))
    assert float(stats["value_loss"]) == pytest.approx(float(plain), rel=1e-5)


# --------------------------------------------------------------------------- the update's mechanics


def _rollout(agent: ActorCritic, T: int, N: int) -> Rollout:
    """A (T, N) rollout of random states whose first feature is the transition's index in the
    flattened batch (0 .. T * N - 1), so a minibatch says which transitions it holds."""
    obs = torch.randn(T, N, agent.obs_dim)
    obs[..., 0] = torch.arange(T * N, dtype=torch.float32).reshape(T, N)
    with torch.no_grad():
        actions, logprobs, values = agent.act(obs)
    return Rollout(obs=obs, actions=actions, logprobs=logprobs, values=values,
                   rewards=torch.ones(T, N), terminated=torch.zeros(T, N, dtype=torch.bool),
                   truncated=torch.zeros(T, N, dtype=torch.bool),
                   final_values=torch.zeros(T, N), next_values=torch.zeros(N))


class _Recording(ActorCritic):
    """Remembers which transitions each call of the loss saw (the first feature of its states)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.minibatches: list[list[int]] = []

    def evaluate_actions(self, obs, actions):
        self.minibatches.append([int(i) for i in obs[:, 0]])
        return super().evaluate_actions(obs, actions)


def _small_config(T: int, N: int, **changes) -> PPOConfig:
    return PPOConfig(num_envs=N, num_steps=T, total_timesteps=T * N, **changes)


def test_ppo_update_steps_once_per_minibatch_for_update_epochs_passes():
    T, N, M, K = 8, 4, 8, 3  # B = 32 transitions: 4 minibatches per epoch, 12 steps
    torch.manual_seed(0)
    agent = _Recording(4, 2)
    rollout = _rollout(agent, T, N)
    optimizer = torch.optim.Adam(agent.parameters())
    steps = []  # how many minibatch losses had been computed at each optimizer step
    optimizer.register_step_pre_hook(lambda *_: steps.append(len(agent.minibatches)))
    ppo_update(agent, optimizer, rollout, torch.randn(T, N), torch.randn(T, N),
               _small_config(T, N, minibatch_size=M, update_epochs=K), torch.Generator().manual_seed(0))
    assert steps == list(range(1, K * (T * N) // M + 1))  # one step after each minibatch
    assert all(len(mb) == M for mb in agent.minibatches)
    for epoch in range(K):  # each epoch sees every transition once
        seen = sum(agent.minibatches[epoch * 4:(epoch + 1) * 4], [])
        assert sorted(seen) == list(range(T * N)), epoch


def test_ppo_update_reshuffles_the_minibatches_every_epoch_from_the_generator():
    T, N, M, K = 8, 4, 8, 3

    def orders(seed: int) -> list[list[int]]:  # each epoch's order of the transitions
        torch.manual_seed(0)
        agent = _Recording(4, 2)
        ppo_update(agent, torch.optim.Adam(agent.parameters()), _rollout(agent, T, N),
                   torch.randn(T, N), torch.randn(T, N),
                   _small_config(T, N, minibatch_size=M, update_epochs=K), torch.Generator().manual_seed(seed))
        return [sum(agent.minibatches[e * 4:(e + 1) * 4], []) for e in range(K)]

    first = orders(0)
    assert all(order != list(range(T * N)) for order in first)  # not the rollout's order
    assert len({tuple(order) for order in first}) == K  # a new order in every epoch
    assert orders(0) == first and orders(1) != first  # drawn from the generator


def test_the_optimizer_never_sees_a_gradient_norm_above_max_grad_norm():
    T, N = 8, 4
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    rollout = _rollout(agent, T, N)
    optimizer = torch.optim.Adam(agent.parameters())
    norms = []
    optimizer.register_step_pre_hook(lambda *_: norms.append(float(torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in agent.parameters() if p.grad is not None])))))
    returns = torch.full((T, N), 100.0)  # V is about 0: a value loss whose gradient is huge
    ppo_update(agent, optimizer, rollout, torch.randn(T, N), returns,
               _small_config(T, N, minibatch_size=16, update_epochs=2, max_grad_norm=0.3,
                             clip_value_loss=False), torch.Generator().manual_seed(0))
    assert len(norms) == 4
    assert all(0.29 < norm <= 0.3 * (1 + 1e-5) for norm in norms), norms  # clipped, to 0.3


def test_ppo_update_reports_the_explained_variance_of_the_old_values_against_the_returns():
    """1 - Var[R - V_old] / Var[R]: the targets are the returns (swapped, Var[V_old] divides)."""
    T, N = 8, 4
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    rollout = _rollout(agent, T, N)
    returns = rollout.values + torch.linspace(-3.0, 3.0, T * N).reshape(T, N)
    stats = ppo_update(agent, torch.optim.Adam(agent.parameters()), rollout, torch.randn(T, N),
                       returns, _small_config(T, N, minibatch_size=16, update_epochs=1),
                       torch.Generator().manual_seed(0))
    values, targets = rollout.values.reshape(-1), returns.reshape(-1)
    expected = explained_variance(values, targets)
    assert abs(expected - explained_variance(targets, values)) > 0.1
    assert stats["explained_variance"] == pytest.approx(expected)


def test_ppo_update_returns_the_mean_of_every_minibatch_statistic(monkeypatch):
    """The update's diagnostics average all K epochs x B/M minibatches, not the last one."""
    import ppo_edu.ppo as ppo_module

    T, N = 8, 4
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    rollout = _rollout(agent, T, N)
    seen = []
    real_loss = ppo_module.ppo_loss

    def spy(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        seen.append({k: float(v) for k, v in stats.items()})
        return loss, stats

    monkeypatch.setattr(ppo_module, "ppo_loss", spy)
    out = ppo_update(agent, torch.optim.Adam(agent.parameters(), lr=1e-2), rollout, torch.randn(T, N),
                     torch.randn(T, N), _small_config(T, N, minibatch_size=8, update_epochs=3),
                     torch.Generator().manual_seed(0))
    assert len(seen) == 12
    assert abs(seen[-1]["approx_kl"] - np.mean([s["approx_kl"] for s in seen])) > 1e-5
    for key in seen[0]:
        assert out[key] == pytest.approx(np.mean([s[key] for s in seen]), rel=1e-5, abs=1e-7), key


def test_each_gradient_step_uses_only_its_own_minibatch_gradient():
    """Gradients are cleared before every backward pass: the second step's gradient is the
    loss's gradient at the weights it starts from, not that plus the first step's."""
    T, N = 8, 4
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    rollout = _rollout(agent, T, N)
    advantages, returns = torch.randn(T, N), torch.randn(T, N)
    config = _small_config(T, N, minibatch_size=T * N, update_epochs=2, max_grad_norm=1e9)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    seen = []  # (weights, gradients) at each step
    optimizer.register_step_pre_hook(lambda *_: seen.append(
        ([p.detach().clone() for p in agent.parameters()],
         [p.grad.detach().clone() for p in agent.parameters()])))
    ppo_update(agent, optimizer, rollout, advantages, returns, config)
    assert len(seen) == 2
    batch = {**rollout.flat(), "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
    for weights, grads in seen:
        fresh = ActorCritic(4, 2)
        with torch.no_grad():
            for p, w in zip(fresh.parameters(), weights):
                p.copy_(w)
        loss, _ = ppo_loss(fresh, batch, config)
        expected = torch.autograd.grad(loss, list(fresh.parameters()))
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_the_optimizer_is_adam_with_eps_1e_5_at_the_config_learning_rate():
    """Adam's eps of 1e-5 (the PPO implementations', not torch's 1e-8) damps the steps of
    parameters with tiny gradients; the lessons' numbers were measured with it."""
    from ppo_edu.ppo import make_optimizer

    optimizer = make_optimizer(ActorCritic(4, 2), PPOConfig(learning_rate=7e-4))
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["eps"] == 1e-5 and optimizer.param_groups[0]["lr"] == 7e-4


def test_without_fused_adam_the_optimizer_still_gets_every_parameter(torch_without_fused_adam):
    """Where torch has no fused Adam for the device, plain Adam takes over, with all the agent's
    parameters (it was handed a generator that the failed fused attempt had already drained)."""
    from ppo_edu.ppo import make_optimizer

    agent = ActorCritic(4, 2)
    optimizer = make_optimizer(agent, PPOConfig(learning_rate=7e-4))
    assert not optimizer.defaults.get("fused")
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(agent.parameters()))


def test_the_entropy_bonus_raises_the_policy_entropy():
    """With zero advantages the surrogate has no gradient and the critic has its own weights:
    only c2 S moves the actor, towards a more random policy (a flipped sign: a surer one)."""
    T, N = 8, 4
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.tensor([1.5, -1.5]))  # P(left) about 0.95
    rollout = _rollout(agent, T, N)
    obs = rollout.obs.reshape(T * N, -1)

    def entropy_after(entropy_coef: float) -> float:
        trained = ActorCritic(4, 2)
        trained.load_state_dict(agent.state_dict())
        ppo_update(trained, torch.optim.Adam(trained.parameters(), lr=1e-2), rollout,
                   torch.zeros(T, N), rollout.values.clone(),
                   _small_config(T, N, minibatch_size=T * N, update_epochs=5,
                                 entropy_coef=entropy_coef, normalize_advantages=False))
        return mean_entropy(trained)

    def mean_entropy(policy: ActorCritic) -> float:
        with torch.no_grad():
            return float(policy.distribution(obs).entropy().mean())

    before = mean_entropy(agent)
    assert entropy_after(0.0) == pytest.approx(before, abs=1e-7)  # nothing else moves the actor
    assert entropy_after(0.1) > before + 0.05


# --------------------------------------------------------------------------- the trainer


def test_history_has_one_record_per_update_with_the_diagnostics(tiny_run):
    _agent, history = tiny_run
    assert len(history) == PPOConfig(**TINY).num_updates == 4
    assert [h["env_steps"] for h in history] == [128, 256, 384, 512]
    keys = {"episode_return", "approx_kl", "clip_fraction", "entropy", "value_loss",
            "policy_loss", "explained_variance", "learning_rate", "wall_time"}
    assert keys <= set(history[0])
    for h in history:
        assert h["approx_kl"] >= 0 and 0 <= h["clip_fraction"] <= 1
        assert 0 < h["entropy"] <= math.log(2) + 1e-6


def test_history_counts_updates_and_episodes_and_times_from_the_start(tiny_run):
    """``update`` counts from 1, ``episodes`` is how many episodes ended in the rollout (0 exactly
    when episode_return is NaN), and ``wall_time`` is seconds since train_ppo began."""
    _, history = tiny_run
    assert [h["update"] for h in history] == [1, 2, 3, 4]
    assert all((h["episodes"] == 0) == math.isnan(h["episode_return"]) for h in history)
    assert sum(h["episodes"] for h in history) >= 10  # a random policy ends an episode in ~22 steps
    times = [h["wall_time"] for h in history]
    assert 0 < times[0] and times == sorted(times) and times[-1] < 60


def test_the_update_trains_with_the_annealed_clip_range_it_records(monkeypatch):
    """The recorded clip_epsilon is the one L^CLIP and the value clipping used, not just a label."""
    import ppo_edu.ppo as ppo_module

    used = []
    real_update = ppo_module.ppo_update

    def spy(agent, optimizer, rollout, advantages, returns, config, generator=None):
        used.append(config.clip_epsilon)
        return real_update(agent, optimizer, rollout, advantages, returns, config, generator)

    monkeypatch.setattr(ppo_module, "ppo_update", spy)
    _, history = train_ppo(PPOConfig(**TINY, seed=7), progress=False)
    assert used == pytest.approx([0.2, 0.15, 0.1, 0.05])
    assert used == [h["clip_epsilon"] for h in history]


def test_learning_rate_anneals_linearly(tiny_run):
    _, history = tiny_run
    lr = PPOConfig().learning_rate
    assert [h["learning_rate"] for h in history] == pytest.approx([lr, 0.75 * lr, 0.5 * lr, 0.25 * lr])


def test_clip_range_anneals_with_the_learning_rate(tiny_run):
    _, history = tiny_run
    assert [h["clip_epsilon"] for h in history] == pytest.approx([0.2, 0.15, 0.1, 0.05])
    _, constant = train_ppo(PPOConfig(**TINY, anneal_clip=False, anneal_lr=False), progress=False)
    assert {h["clip_epsilon"] for h in constant} == {0.2}
    assert {h["learning_rate"] for h in constant} == {PPOConfig().learning_rate}


def test_same_seed_gives_the_same_numbers(tiny_run):
    agent, history = tiny_run
    agent2, history2 = train_ppo(PPOConfig(**TINY, seed=7), progress=False)
    strip = [{k: v for k, v in h.items() if k != "wall_time"} for h in history]
    strip2 = [{k: v for k, v in h.items() if k != "wall_time"} for h in history2]
    assert strip == strip2
    for (name, p), p2 in zip(agent.state_dict().items(), agent2.state_dict().values()):
        assert torch.equal(p, p2), name


def test_different_seeds_give_different_runs(tiny_run):
    agent, _ = tiny_run
    other, _ = train_ppo(PPOConfig(**TINY, seed=8), progress=False)
    assert not torch.equal(agent.actor[0].weight, other.actor[0].weight)


def test_the_advantage_function_is_a_parameter():
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return compute_gae(*args, **kwargs)

    config = PPOConfig(**TINY, gamma=0.9, lam=0.5)
    train_ppo(config, advantage_fn=spy, progress=False)
    assert len(calls) == config.num_updates
    assert calls[0] == {"gamma": 0.9, "lam": 0.5}


def test_a_broken_advantage_function_changes_training():
    """The trainer really uses what advantage_fn returns (here: all-zero advantages)."""
    def zeros(rewards, values, *rest, gamma, lam):
        _, returns = compute_gae(rewards, values, *rest, gamma=gamma, lam=lam)
        return torch.zeros_like(rewards), returns

    _, history = train_ppo(PPOConfig(**TINY, normalize_advantages=False), advantage_fn=zeros,
                           progress=False)
    assert all(abs(h["policy_loss"]) < 1e-7 for h in history)


def test_callback_can_stop_training():
    seen = []
    _, history = train_ppo(PPOConfig(**TINY), progress=False,
                           callback=lambda agent, record: seen.append(record) or len(seen) == 2)
    assert len(history) == 2 and seen == history


def test_a_numpy_truth_value_from_the_callback_stops_training_too():
    """A callback that returns ``np.mean(returns) > 475`` hands back np.bool_, not True: any
    true value stops the run."""
    _, history = train_ppo(PPOConfig(**TINY), progress=False,
                           callback=lambda agent, record: np.int64(record["update"]) >= 2)
    assert len(history) == 2


def test_the_minibatch_shuffling_is_seeded_with_the_config_seed(monkeypatch):
    """``seed`` seeds the minibatch order as well as torch and the envs (one fixed generator
    seed would shuffle every run's minibatches alike)."""
    import ppo_edu.ppo as ppo_module

    seeds = []
    real_update = ppo_module.ppo_update

    def spy(agent, optimizer, rollout, advantages, returns, config, generator=None):
        if not seeds:  # before this update draws from it
            seeds.append((generator.initial_seed(), generator.get_state().clone()))
        return real_update(agent, optimizer, rollout, advantages, returns, config, generator)

    monkeypatch.setattr(ppo_module, "ppo_update", spy)
    for seed in (3, 11):
        seeds.clear()
        train_ppo(PPOConfig(**TINY, seed=seed), progress=False)
        initial, state = seeds[0]
        assert initial == seed
        assert torch.equal(state, torch.Generator().manual_seed(seed).get_state())


def test_torch_threads_are_set_for_training_and_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # conftest runs every test with 1; start from something else
    try:
        during = []
        train_ppo(PPOConfig(**TINY, torch_threads=1), progress=False,
                  callback=lambda agent, record: during.append(torch.get_num_threads()))
        assert during and set(during) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_ppo_learns_cartpole_a_little():
    """A short run must move the training return well above a random policy's ~22."""
    _, history = train_ppo(PPOConfig(total_timesteps=8192, seed=0), progress=False)
    early = [h["episode_return"] for h in history[:2]]
    late = [h["episode_return"] for h in history[-3:] if not math.isnan(h["episode_return"])]
    assert max(early) < 40 and min(late) > 60


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tiny_run, tmp_path):
    agent, _ = tiny_run
    config = PPOConfig(**TINY, seed=7)
    path = save_checkpoint(tmp_path / "agent.safetensors", agent, config)
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    for (name, p), p2 in zip(agent.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, p2), name
    obs = torch.randn(5, 4)
    assert torch.equal(agent.act(obs, deterministic=True)[0], loaded.act(obs, deterministic=True)[0])


def test_checkpoint_without_config(tiny_run, tmp_path):
    agent, _ = tiny_run
    loaded, config = load_checkpoint(save_checkpoint(tmp_path / "a.safetensors", agent))
    assert config is None and loaded.hidden == agent.hidden


def test_a_checkpoint_with_config_fields_this_version_lacks_still_loads(tmp_path):
    """A checkpoint from a later version may record more PPOConfig fields: the known ones are
    read (not a TypeError from PPOConfig(**...)), and a warning names the ones left out."""
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file

    agent, config = ActorCritic(4, 2), PPOConfig(**TINY, seed=4)
    metadata = {"obs_dim": "4", "n_actions": "2", "hidden": str(agent.hidden),
                "config": json.dumps({**asdict(config), "target_kl": 0.02})}
    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, str(tmp_path / "a.safetensors"),
              metadata=metadata)
    with pytest.warns(UserWarning, match="PPOConfig has no field target_kl; the returned config leaves"):
        _, loaded = load_checkpoint(tmp_path / "a.safetensors")
    assert loaded == config


def test_loading_a_foreign_safetensors_file_says_so(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a ppo_edu checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_a_non_finite_update_is_an_error_not_a_silent_nan():
    from ppo_edu.ppo import ppo_update
    from ppo_edu.rollout import Rollout

    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    T, N = 4, 2
    obs = torch.randn(T, N, 4)
    with torch.no_grad():
        actions, logprobs, values = agent.act(obs)
    rollout = Rollout(obs=obs, actions=actions, logprobs=logprobs, values=values,
                      rewards=torch.ones(T, N), terminated=torch.zeros(T, N, dtype=torch.bool),
                      truncated=torch.zeros(T, N, dtype=torch.bool),
                      final_values=torch.zeros(T, N), next_values=torch.zeros(N))
    returns = torch.full((T, N), float("inf"))  # a broken critic target
    config = PPOConfig(num_envs=N, num_steps=T, minibatch_size=8, total_timesteps=8,
                       update_epochs=1)
    optimizer = torch.optim.Adam(agent.parameters())
    with pytest.raises(FloatingPointError, match="non-finite returns"):
        ppo_update(agent, optimizer, rollout, torch.randn(T, N), returns, config)
    # finite inputs, but a diverged network: caught in the update's statistics
    with torch.no_grad():
        agent.critic[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="value_loss"):
        ppo_update(agent, optimizer, rollout, torch.randn(T, N), torch.ones(T, N), config)
    # a NaN loss from a finite network (here a NaN coefficient set after validation): the
    # error comes before the optimiser steps, so the caller's weights are still finite
    fresh = ActorCritic(4, 2)
    before = [p.detach().clone() for p in fresh.parameters()]
    broken = PPOConfig(num_envs=N, num_steps=T, minibatch_size=8, total_timesteps=8, update_epochs=1)
    object.__setattr__(broken, "value_coef", float("nan"))
    with pytest.raises(FloatingPointError, match="refusing to step"):
        ppo_update(fresh, torch.optim.Adam(fresh.parameters()), rollout, torch.randn(T, N),
                   torch.ones(T, N), broken)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))


def test_advantages_of_another_shape_than_the_rollout_are_refused():
    """A transposed (N, T) advantage tensor would flatten without complaint and pair each
    advantage with another step's transition."""
    from ppo_edu.ppo import ppo_update
    from ppo_edu.rollout import Rollout

    agent, T, N = ActorCritic(4, 2), 4, 2
    obs = torch.randn(T, N, 4)
    actions, logprobs, values = agent.act(obs)
    rollout = Rollout(obs=obs, actions=actions, logprobs=logprobs, values=values,
                      rewards=torch.ones(T, N), terminated=torch.zeros(T, N, dtype=torch.bool),
                      truncated=torch.zeros(T, N, dtype=torch.bool),
                      final_values=torch.zeros(T, N), next_values=torch.zeros(N))
    config = PPOConfig(num_envs=N, num_steps=T, minibatch_size=8, total_timesteps=8, update_epochs=1)
    with pytest.raises(ValueError, match=r"advantages has shape \(2, 4\) but rewards has \(4, 2\)"):
        ppo_update(agent, torch.optim.Adam(agent.parameters()), rollout, torch.randn(N, T),
                   torch.ones(T, N), config)


def test_returns_of_another_shape_than_the_rollout_are_refused():
    """The returns pair with the transitions as the advantages do: (N, T) is refused too."""
    agent, T, N = ActorCritic(4, 2), 4, 2
    torch.manual_seed(0)
    rollout = _rollout(agent, T, N)
    config = PPOConfig(num_envs=N, num_steps=T, minibatch_size=8, total_timesteps=8, update_epochs=1)
    with pytest.raises(ValueError, match=r"returns has shape \(2, 4\) but rewards has \(4, 2\)"):
        ppo_update(agent, torch.optim.Adam(agent.parameters()), rollout, torch.randn(T, N),
                   torch.ones(N, T), config)


def test_train_ppo_hands_truncations_to_the_advantage_function_as_truncations():
    """Time-limit ends must reach GAE as truncated, not terminated, or it bootstraps them with 0."""
    import gymnasium as gym

    if "ShortCartPole-v0" not in gym.registry:
        gym.register("ShortCartPole-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                     max_episode_steps=10)
    seen = []

    def spy(rewards, values, terminated, truncated, final_values, next_values, **kwargs):
        seen.append((terminated.clone(), truncated.clone(), final_values.clone(), next_values.clone()))
        return compute_gae(rewards, values, terminated, truncated, final_values, next_values, **kwargs)

    config = PPOConfig(env_id="ShortCartPole-v0", total_timesteps=256, num_envs=4, num_steps=32,
                       minibatch_size=64, update_epochs=1)
    train_ppo(config, advantage_fn=spy, progress=False)
    assert seen and any((truncated & ~terminated).any() for terminated, truncated, _, _ in seen)
    # ...and with values to bootstrap from (V(final observation) at every time-limit end, V(s_T)
    # after the rollout's last step): not zeros, which a critic's output never is exactly
    for terminated, truncated, final_values, next_values in seen:
        assert (final_values[truncated & ~terminated] != 0).all()
        assert (next_values != 0).all()


def test_the_cpi_branch_counts_a_ratio_on_the_clip_bound_as_the_clipped_branch_does():
    # use_clipping=False still reports the clip fraction, with the same strict |r - 1| > epsilon
    agent, obs, actions, logprobs, values = _agent_and_samples(8)
    old = logprobs - torch.linspace(-0.3, 0.3, 8)
    eps = float((torch.exp(logprobs - old) - 1).abs()[0])  # sample 0 sits exactly on the bound
    batch = dict(obs=obs, actions=actions, logprobs=old, values=values, advantages=torch.randn(8),
                 returns=torch.randn(8))
    config = PPOConfig(num_envs=1, num_steps=8, minibatch_size=8, total_timesteps=8, clip_epsilon=eps)
    _, clipped = ppo_loss(agent, batch, config)
    _, cpi = ppo_loss(agent, batch, config.replace(use_clipping=False))
    # only sample 7 (r = e^0.3, 0.35 from 1) is beyond; sample 0 (r = e^-0.3) is on the bound
    assert float(cpi["clip_fraction"]) == float(clipped["clip_fraction"]) == 1 / 8
