"""The math of ppo_edu.objectives, pinned: ratio, L^CPI, L^CLIP, KL estimators."""

import math

import pytest
import torch

from ppo_edu.agents import ActorCritic
from ppo_edu.objectives import (
    approx_kl,
    categorical_kl,
    clipped_surrogate,
    cpi_surrogate,
    masked_mean,
    probability_ratio,
)


def batch(n=64, seed=0):
    torch.manual_seed(seed)
    agent = ActorCritic(4, 2)
    obs = torch.randn(n, 4)
    with torch.no_grad():
        actions = agent.distribution(obs).sample()
        old_logprobs = agent.distribution(obs).log_prob(actions)
    advantages = torch.randn(n)
    return agent, obs, actions, old_logprobs, advantages


def actor_grad(agent, loss):
    agent.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in agent.actor.parameters()])


def test_ratio_is_one_at_theta_old():
    agent, obs, actions, old_logprobs, _ = batch()
    logprobs = agent.distribution(obs).log_prob(actions)
    assert torch.allclose(probability_ratio(logprobs, old_logprobs), torch.ones(64))


def test_ratio_is_stable_for_rare_actions():
    ratio = probability_ratio(torch.tensor([-800.0]), torch.tensor([-801.0]))
    assert torch.isfinite(ratio).all() and torch.isclose(ratio, torch.tensor([torch.e]))


def test_cpi_gradient_at_theta_old_equals_policy_gradient():
    agent, obs, actions, old_logprobs, advantages = batch()
    logprobs = agent.distribution(obs).log_prob(actions)
    g_cpi = actor_grad(agent, cpi_surrogate(logprobs, old_logprobs, advantages))
    logprobs = agent.distribution(obs).log_prob(actions)
    g_pg = actor_grad(agent, (logprobs * advantages).mean())
    assert g_cpi.abs().max() > 1e-4  # a real gradient, not zero = zero
    assert torch.allclose(g_cpi, g_pg, atol=1e-6)


def test_clipped_gradient_equals_cpi_gradient_inside_the_clip_range():
    agent, obs, actions, old_logprobs, advantages = batch()
    logprobs = agent.distribution(obs).log_prob(actions)
    g_clip = actor_grad(agent, clipped_surrogate(logprobs, old_logprobs, advantages).objective)
    logprobs = agent.distribution(obs).log_prob(actions)
    g_cpi = actor_grad(agent, cpi_surrogate(logprobs, old_logprobs, advantages))
    assert torch.allclose(g_clip, g_cpi, atol=1e-6)


@pytest.mark.parametrize(
    "ratio, advantage, grad_is_zero",
    [
        (1.5, 1.0, True),  # A > 0 and already past 1 + eps: stop pushing
        (0.5, -1.0, True),  # A < 0 and already below 1 - eps: stop pushing
        (1.1, 1.0, False),  # inside the range
        (0.9, -1.0, False),
        (0.5, 1.0, False),  # A > 0 but r fell below 1 - eps: the objective got worse, keep the gradient
        (1.5, -1.0, False),  # A < 0 but r rose past 1 + eps: same, never clipped away
    ],
)
def test_clipped_gradient_is_zero_only_past_the_bound_the_advantage_pushes_towards(ratio, advantage, grad_is_zero):
    old = torch.tensor([-1.0])
    new = (old + torch.log(torch.tensor([ratio]))).requires_grad_()
    objective, _ = clipped_surrogate(new, old, torch.tensor([advantage]), epsilon=0.2)
    objective.backward()
    if grad_is_zero:
        assert new.grad.item() == 0.0
    else:
        assert new.grad.item() == pytest.approx(ratio * advantage, rel=1e-5)


@pytest.mark.parametrize("advantage", [2.0, -2.0])
def test_clipped_objective_is_a_lower_bound_of_cpi(advantage):
    old = torch.zeros(101)
    new = torch.log(torch.linspace(0.05, 3.0, 101))
    adv = torch.full((101,), advantage)
    assert clipped_surrogate(new, old, adv).objective <= cpi_surrogate(new, old, adv) + 1e-6
    # sample by sample, through the package (a one-hot mask makes the mean one sample's term);
    # inside [1 - eps, 1 + eps] the two agree, so the bound is tight there
    ratio = new.exp()
    for i in range(len(new)):
        one = torch.zeros(len(new))
        one[i] = 1.0
        clip_i = clipped_surrogate(new, old, adv, epsilon=0.2, mask=one).objective
        cpi_i = cpi_surrogate(new, old, adv, mask=one)
        assert clip_i <= cpi_i + 1e-6, (i, ratio[i].item())
        if 0.8 <= ratio[i] <= 1.2:
            assert clip_i == pytest.approx(cpi_i.item(), abs=1e-6)


def test_clip_fraction_counts_both_sides():
    old = torch.zeros(6)
    new = torch.log(torch.tensor([0.5, 0.85, 1.0, 1.1, 1.25, 2.0]))
    _, fraction = clipped_surrogate(new, old, torch.ones(6), epsilon=0.2)
    assert fraction.item() == pytest.approx(0.5)


def test_mask_ignores_padding_entries():
    new = torch.tensor([[0.1, 0.2, 99.0]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, float("nan")]])  # NaN in padding is fine
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    masked = clipped_surrogate(new, old, adv, mask=mask).objective
    plain = clipped_surrogate(new[:, :2], old[:, :2], adv[:, :2]).objective
    assert torch.isclose(masked, plain)


def test_masked_mean_of_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="mask selects no entries"):
        masked_mean(torch.ones(3), torch.zeros(3))


@pytest.mark.parametrize("epsilon", [0, -0.1, float("nan")])
def test_non_positive_epsilon_is_rejected(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        clipped_surrogate(torch.zeros(3), torch.zeros(3), torch.ones(3), epsilon=epsilon)


def test_shape_mismatch_names_the_argument():
    with pytest.raises(ValueError, match=r"advantages has shape \(4,\)"):
        cpi_surrogate(torch.zeros(3), torch.zeros(3), torch.ones(4))
    with pytest.raises(ValueError, match="old_logprobs"):
        probability_ratio(torch.zeros(3), torch.zeros(2, 3))


def test_nan_advantages_are_rejected_with_their_index():
    adv = torch.tensor([1.0, float("nan"), 0.0])
    with pytest.raises(ValueError, match=r"advantages contains NaN or inf \(first at index \(1,\)"):
        clipped_surrogate(torch.zeros(3), torch.zeros(3), adv)


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="logprobs must be a torch.Tensor"):
        probability_ratio([0.0], torch.zeros(1))


# Padding holding inf or NaN (a -inf old log-prob where nothing was sampled, say): the value
# is masked, and the backward pass must be too (0 * inf is NaN, and it would reach the weights).
PADDED = {"new": torch.tensor([[0.1, 0.2, 99.0, 0.0]]),
          "old": torch.tensor([[0.0, 0.0, 0.0, float("-inf")]]),
          "adv": torch.tensor([[1.0, -1.0, float("inf"), float("nan")]]),
          "mask": torch.tensor([[1.0, 1.0, 0.0, 0.0]])}


@pytest.mark.parametrize("objective", [
    lambda new, old, adv, mask: cpi_surrogate(new, old, adv, mask),
    lambda new, old, adv, mask: clipped_surrogate(new, old, adv, mask=mask).objective,
    lambda new, old, adv, mask: approx_kl(new, old, mask),
], ids=["cpi", "clip", "approx_kl"])
def test_padding_gets_a_zero_gradient_whatever_it_holds(objective):
    new = PADDED["new"].clone().requires_grad_()
    value = objective(new, PADDED["old"], PADDED["adv"], PADDED["mask"])
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(new.grad).all(), new.grad
    assert (new.grad[0, 2:] == 0).all() and (new.grad[0, :2] != 0).all()
    # and the real entries get exactly the gradient they get without the padding
    real = PADDED["new"][:, :2].clone().requires_grad_()
    objective(real, PADDED["old"][:, :2], PADDED["adv"][:, :2], None).backward()
    assert torch.allclose(new.grad[:, :2], real.grad)


def test_clipped_value_loss_gives_padding_a_zero_gradient_whatever_it_holds():
    from ppo_edu.rlhf.losses import clipped_value_loss

    values = torch.tensor([[0.5, -0.2, 1e30, 0.0]], requires_grad=True)
    old_values = torch.tensor([[0.4, 0.0, 0.0, float("nan")]])
    returns = torch.tensor([[1.0, -1.0, float("-inf"), 0.0]])
    loss, _ = clipped_value_loss(values, old_values, returns, PADDED["mask"])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(values.grad).all(), values.grad
    assert (values.grad[0, 2:] == 0).all() and (values.grad[0, :2] != 0).all()


def test_k3_estimates_kl_old_to_new_and_is_never_negative():
    # two policies far enough apart that the direction shows: KL(old || new) = 0.368,
    # KL(new || old) = 0.511 for old = (0.9, 0.1), new = (0.5, 0.5)
    old_logits, logits = torch.log(torch.tensor([0.9, 0.1])), torch.log(torch.tensor([0.5, 0.5]))
    exact = categorical_kl(old_logits, logits).item()
    assert exact == pytest.approx(0.9 * torch.log(torch.tensor(1.8)).item()
                                  + 0.1 * torch.log(torch.tensor(0.2)).item(), abs=1e-6)
    assert exact == pytest.approx(0.3681, abs=1e-4)
    assert categorical_kl(logits, old_logits).item() == pytest.approx(0.5108, abs=1e-4)
    # exact expectation over a ~ pi_old: sum_a pi_old(a) k3(a) is the KL itself
    old_lp, new_lp = torch.log_softmax(old_logits, -1), torch.log_softmax(logits, -1)
    per_action = torch.stack([approx_kl(new_lp[a:a + 1], old_lp[a:a + 1]) for a in range(2)])
    assert (old_lp.exp() * per_action).sum().item() == pytest.approx(exact, abs=1e-6)
    # every sample >= 0, also where the plain log-ratio estimate k1 = log(pi_old/pi) is negative
    # (action 1: k1 = log(0.1/0.5) = -1.609, k3 = 5 - 1 - log 5 = 2.391)
    assert (old_lp - new_lp)[1].item() == pytest.approx(-1.609, abs=1e-3)
    assert per_action[1].item() == pytest.approx(2.391, abs=1e-3)
    assert per_action[0].item() == pytest.approx(0.1433, abs=1e-4)


def test_k3_matches_exact_kl_on_sampled_actions():
    torch.manual_seed(0)
    old_logits, logits = torch.randn(20000, 3) * 2, torch.randn(20000, 3) * 0.5
    actions = torch.distributions.Categorical(logits=old_logits).sample()
    old_lp = torch.distributions.Categorical(logits=old_logits).log_prob(actions)
    new_lp = torch.distributions.Categorical(logits=logits).log_prob(actions)
    exact, reverse = categorical_kl(old_logits, logits).mean(), categorical_kl(logits, old_logits).mean()
    # peaked old, flat new: the two directions differ (0.57 and 0.99 nats), and k3 finds the first
    assert reverse > 1.5 * exact
    assert approx_kl(new_lp, old_lp).item() == pytest.approx(exact.item(), rel=0.1)


def test_categorical_kl_is_zero_for_identical_policies_and_positive_otherwise():
    logits = torch.randn(5, 2)
    assert torch.allclose(categorical_kl(logits, logits), torch.zeros(5), atol=1e-7)
    assert (categorical_kl(logits, logits + torch.tensor([1.0, 0.0])) > 0).all()


def test_only_the_new_logprobs_get_gradients():
    # pi_theta_old and A_hat are constants of the surrogate: even when a caller passes tensors
    # that still carry a graph, no gradient may flow into them.
    logprobs = torch.tensor([0.1, -0.3, 0.5], requires_grad=True)
    objectives = {
        "ratio": lambda old, adv: probability_ratio(logprobs, old).sum(),
        "L^CPI": lambda old, adv: cpi_surrogate(logprobs, old, adv),
        "L^CLIP": lambda old, adv: clipped_surrogate(logprobs, old, adv).objective,
    }
    for name, objective in objectives.items():
        old = torch.tensor([0.0, 0.2, -0.1], requires_grad=True)
        adv = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
        objective(old, adv).backward()
        assert old.grad is None and adv.grad is None, name
    assert logprobs.grad is not None


def test_masked_mean_ignores_non_finite_values_in_the_padding():
    values = torch.tensor([1.0, 3.0, float("inf"), float("nan")])
    assert masked_mean(values, torch.tensor([1, 1, 0, 0])).item() == 2.0


def test_clip_fraction_counts_only_the_real_entries():
    # one of the two real entries is clipped (r = 2); the padded one (r = 1) must not count
    out = clipped_surrogate(torch.tensor([math.log(2.0), 0.0, 0.0]), torch.zeros(3), torch.ones(3),
                            0.2, mask=torch.tensor([1, 1, 0]))
    assert out.clip_fraction.item() == pytest.approx(0.5)


def test_a_ratio_exactly_on_the_clip_bound_is_not_counted_as_clipped():
    # |r - 1| > epsilon, strictly: at the bound the clipped and unclipped terms are equal
    ratio = torch.tensor([1.25, 0.75, 1.0, 1.5])  # exact in float32, and exp(log r) == r here
    out = clipped_surrogate(ratio.log(), torch.zeros(4), torch.ones(4), epsilon=0.25)
    assert out.clip_fraction.item() == 0.25  # only 1.5; ">=" would count three


def test_the_value_clip_fraction_and_loss_average_over_real_tokens_only():
    from ppo_edu.rlhf.losses import clipped_value_loss

    values = torch.tensor([[0.5, 0.0, 0.0, 0.0]])  # token 0 moved 0.5 from its old value 0: clipped at 0.2
    loss, fraction = clipped_value_loss(values, torch.zeros(1, 4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                                        torch.tensor([[1, 1, 0, 0]]), clip_range=0.2)
    assert fraction.item() == pytest.approx(0.5)  # 1 of 2 real tokens, not 1 of 4
    assert loss.item() == pytest.approx(0.5 * (0.8 ** 2 + 0.0) / 2)  # max((0.5-1)^2, (0.2-1)^2) = 0.64


def test_the_value_loss_sends_no_gradient_to_old_values_or_returns():
    from ppo_edu.rlhf.losses import clipped_value_loss

    values = torch.tensor([[0.5, 0.1]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0]], requires_grad=True)
    returns = torch.tensor([[1.0, -1.0]], requires_grad=True)
    loss, _ = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip_range=0.2)
    loss.backward()
    assert values.grad is not None and old.grad is None and returns.grad is None
