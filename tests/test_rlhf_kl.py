"""The KL penalty: k1/k3 estimators, the reported KL is the penalised KL, the adaptive
controller (COURSE.md §8: TRL #1161, #351)."""

import warnings

import pytest
import torch

from ppo_edu.rlhf.kl import (
    KL_PLACEMENTS,
    AdaptiveKLController,
    FixedKLController,
    expected_kl_gradients,
    expected_term_gradient,
    full_kl,
    kl_loss_term,
    kl_penalty,
    sequence_kl,
    warn_if_negative,
)


def _two_categoricals(seed=0, V=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, generator=g), torch.randn(V, generator=g)


def test_kl_to_an_identical_policy_is_exactly_zero():
    lp = torch.log_softmax(torch.randn(3, 5), -1)
    mask = torch.ones(3, 5)
    for est in ("k1", "k3"):
        assert torch.equal(kl_penalty(lp, lp.clone(), mask, est), torch.zeros(3, 5))


def test_k3_is_never_negative_while_k1_can_be():
    lp, ref = -torch.randn(1000).abs(), -torch.randn(1000).abs()
    mask = torch.ones(1000)
    assert (kl_penalty(lp[None], ref[None], mask[None], "k3") >= 0).all()
    assert (kl_penalty(lp[None], ref[None], mask[None], "k1") < 0).any()


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_estimators_are_unbiased_for_the_exact_kl(estimator):
    logits, ref_logits = _two_categoricals()
    exact = full_kl(logits[None, None], ref_logits[None, None], torch.ones(1, 1)).item()
    g = torch.Generator().manual_seed(1)
    samples = torch.multinomial(torch.softmax(logits, -1), 200_000, replacement=True, generator=g)
    lp = torch.log_softmax(logits, -1)[samples][None]
    ref = torch.log_softmax(ref_logits, -1)[samples][None]
    estimate = kl_penalty(lp, ref, torch.ones_like(lp), estimator).mean().item()
    assert estimate == pytest.approx(exact, rel=0.03)


def test_padding_contributes_nothing():
    lp, ref = -torch.randn(2, 4).abs(), -torch.randn(2, 4).abs()
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    kl = kl_penalty(lp, ref, mask, "k3")
    assert (kl[0, 2:] == 0).all()
    torch.testing.assert_close(sequence_kl(kl, mask), kl.sum(1))


@pytest.mark.parametrize("argument", ["logprobs", "ref_logprobs"])
def test_probabilities_passed_as_log_probabilities_are_refused(argument):
    """A token's log-probability is <= 0; probabilities in their place would give a k1 "KL"
    that is a difference of probabilities, and the trainer would penalise it silently."""
    logp = torch.log_softmax(torch.randn(2, 4, 7), -1)[..., 0]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    inputs = {"logprobs": logp, "ref_logprobs": logp - 0.1}
    inputs[argument] = inputs[argument].exp()
    with pytest.raises(ValueError, match=f"^{argument} must hold log-probabilities .* probabilities passed"):
        kl_penalty(inputs["logprobs"], inputs["ref_logprobs"], mask)
    # padding may hold anything, a positive number included; and 0 (probability 1) is fine
    padded = logp.clone()
    padded[0, 3] = 5.0
    padded[1, 0] = 0.0
    assert torch.isfinite(kl_penalty(padded, padded - 0.1, mask)).all()


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_non_finite_padding_does_not_leak_into_the_kl(estimator):
    """Padding may hold anything: an inf log-prob after EOS times a 0 mask would be NaN and
    turn the sample's KL, the batch mean and then beta into NaN (COURSE.md §8, NaN row)."""
    lp, ref = -torch.randn(2, 4).abs(), -torch.randn(2, 4).abs()
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    clean = kl_penalty(lp, ref, mask, estimator)
    lp[0, 2], ref[0, 3] = -float("inf"), float("nan")
    dirty = kl_penalty(lp, ref, mask, estimator)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean)
    junk = clean.clone()
    junk[0, 3] = float("nan")
    torch.testing.assert_close(sequence_kl(junk, mask), sequence_kl(clean, mask))


@pytest.mark.parametrize("controller", [AdaptiveKLController(0.1, target=6.0, horizon=100),
                                        FixedKLController(0.1)])
@pytest.mark.parametrize("kl", [float("nan"), float("inf")])
def test_controllers_refuse_a_non_finite_kl(controller, kl):
    with pytest.raises(ValueError, match=f"the measured KL is {kl}"):
        controller.update(kl, n_steps=8)
    assert controller.value == 0.1


def test_unknown_estimator_is_rejected():
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), "k2")


def test_clearly_negative_kl_warns():
    with pytest.warns(RuntimeWarning, match="not sampled from the policy"):
        warn_if_negative(-2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_negative(-0.1)  # noise, not a bug


def test_adaptive_controller_raises_beta_above_target_and_lowers_it_below():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(12.0, n_steps=1000)  # error clipped at +0.2 -> beta * (1 + 0.2 * 0.1)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(3.0, n_steps=1000)  # error -0.5 clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 0.98)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(6.6, n_steps=10_000)  # error +0.1, K = 1
    assert ctl.value == pytest.approx(0.11)


@pytest.mark.parametrize("make, match", [
    (lambda: FixedKLController(float("nan")), "kl_coef"), (lambda: FixedKLController(float("inf")), "kl_coef"),
    (lambda: AdaptiveKLController(float("nan"), 6.0, 100), "init_kl_coef"),
    (lambda: AdaptiveKLController(float("inf"), 6.0, 100), "init_kl_coef"),
    (lambda: AdaptiveKLController(0.1, float("inf"), 100), "target"),
    (lambda: AdaptiveKLController(0.1, 6.0, 0.5), "horizon"),
    (lambda: AdaptiveKLController(0.1, 6.0, True), "horizon"),
])
def test_controllers_refuse_bad_settings(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_adaptive_controller_refuses_a_batch_that_could_flip_betas_sign():
    """beta * (1 - 0.2 * n / horizon): at n = 64, horizon = 10 that is beta * -0.28."""
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10)
    with pytest.raises(ValueError, match="n_steps < 5 \\* horizon"):
        ctl.update(0.0, n_steps=64)
    with pytest.raises(ValueError, match="n_steps < 5 \\* horizon"):
        ctl.update(0.0, n_steps=50)  # exactly 5 horizons: beta * 0
    assert ctl.value == 0.2
    ctl.update(0.0, n_steps=49)  # the largest batch it takes: beta * 0.02, still positive
    assert ctl.value == pytest.approx(0.2 * 0.02) and ctl.value > 0


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.05)
    ctl.update(100.0, 1000)
    assert ctl.value == 0.05
    assert FixedKLController(0.0).value == 0.0  # the documented "no KL penalty" setting


def test_k3_gradient_stays_finite_with_minus_inf_log_probs_in_the_padding():
    # a KL term differentiated through kl_penalty (a KL in the loss) must not get NaN
    # gradients from an impossible token after EOS
    logprobs = torch.tensor([[-1.0, -2.0, float("-inf")]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, float("-inf")]])
    for estimator in ("k1", "k3"):
        logprobs.grad = None
        kl_penalty(logprobs, ref, torch.tensor([[1, 1, 0]]), estimator).sum().backward()
        assert torch.isfinite(logprobs.grad).all(), estimator
        assert logprobs.grad[0, 2] == 0


def test_full_kl_is_zero_for_equal_logits_and_positive_otherwise():
    a, b = _two_categoricals()
    mask = torch.ones(1, 1)
    assert full_kl(a[None, None], a[None, None], mask).item() == pytest.approx(0.0, abs=1e-7)
    p, q = torch.softmax(a, -1), torch.softmax(b, -1)
    assert full_kl(a[None, None], b[None, None], mask).item() == pytest.approx(
        float((p * (p / q).log()).sum()), rel=1e-5)
    assert full_kl(a[None, None], b[None, None], mask).item() > 0.01


# -- where the KL goes: the expected gradient of each placement (expected_kl_gradients) ------

def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


@pytest.mark.parametrize("placement", ["k1 in the reward", "k2 in the loss", "ratio * k3 in the loss"])
def test_these_placements_follow_the_gradient_of_the_reverse_kl(placement):
    logits, ref_logits = _two_categoricals(seed=1, V=7)
    grads = expected_kl_gradients(logits, ref_logits)
    torch.testing.assert_close(grads[placement], grads["reverse KL"], atol=1e-6, rtol=1e-5)


def test_the_two_true_gradients_match_autograd_of_the_two_kls():
    """expected_kl_gradients writes them in closed form, d KL(pi||pi_ref) / d logits_y =
    pi_y (log pi_y / pi_ref_y - KL) and d KL(pi_ref||pi) / d logits = pi - pi_ref; autograd of
    each KL, written out here, must agree, and so must the exact KL in the loss (autograd of
    full_kl, computed separately)."""
    logits, ref_logits = _two_categoricals(seed=8, V=7)
    grads = expected_kl_gradients(logits, ref_logits)
    theta = logits.clone().double().requires_grad_(True)
    logp, ref_logp = torch.log_softmax(theta, -1), torch.log_softmax(ref_logits.double(), -1)
    reverse = (logp.exp() * (logp - ref_logp)).sum()
    forward = (ref_logp.exp() * (ref_logp - logp)).sum()
    d_reverse = torch.autograd.grad(reverse, theta, retain_graph=True)[0].float()
    d_forward = torch.autograd.grad(forward, theta)[0].float()
    torch.testing.assert_close(grads["reverse KL"], d_reverse, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads["forward KL"], d_forward, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads["exact KL in the loss"], grads["reverse KL"], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(grads["reverse KL"], grads["forward KL"], atol=1e-3)


def test_k1_in_the_loss_has_no_expected_gradient_at_all():
    logits, ref_logits = _two_categoricals(seed=2, V=7)
    grads = expected_kl_gradients(logits, ref_logits)
    assert grads["reverse KL"].abs().max() > 0.05  # there is a KL to pull on ...
    torch.testing.assert_close(grads["k1 in the loss"], torch.zeros(7), atol=1e-7, rtol=0)  # ... and no pull


def test_k3_in_the_loss_follows_the_forward_kl_not_the_reverse_one():
    logits, ref_logits = _two_categoricals(seed=3, V=7)
    grads = expected_kl_gradients(3 * logits, ref_logits)  # far from the reference
    torch.testing.assert_close(grads["k3 in the loss"], grads["forward KL"], atol=1e-6, rtol=1e-5)
    assert _cosine(grads["k3 in the loss"], grads["reverse KL"]) < 0.95


def test_forward_and_reverse_gradients_agree_near_the_reference_and_part_far_from_it():
    ref_logits, direction = _two_categoricals(seed=4, V=50)
    near = expected_kl_gradients(ref_logits + 0.01 * direction, ref_logits)
    far = expected_kl_gradients(ref_logits + 3.0 * direction, ref_logits)
    assert _cosine(near["k3 in the loss"], near["reverse KL"]) > 0.999
    assert _cosine(far["k3 in the loss"], far["reverse KL"]) < 0.9


def test_k3_in_the_reward_follows_the_reverse_kl_minus_the_forward_kl():
    """TRL's PPO with kl_estimator="k3" (and RLHFConfig's): k3's value is unbiased, but as a
    reward E[k3 grad log pi] = grad KL(pi||pi_ref) - grad KL(pi_ref||pi). Near the reference
    the two cancel: the pull shrinks with the distance, relative to the right one."""
    ref_logits, direction = _two_categoricals(seed=4, V=50)
    relative = []
    for distance in (0.01, 0.1, 3.0):
        grads = expected_kl_gradients(ref_logits + distance * direction, ref_logits)
        torch.testing.assert_close(grads["k3 in the reward"], grads["reverse KL"] - grads["forward KL"],
                                   atol=1e-6, rtol=1e-5)
        relative.append((grads["k3 in the reward"].norm() / grads["reverse KL"].norm()).item())
    assert relative[0] < 0.02 and relative[0] < relative[1] / 5 < relative[2] / 5, relative


@pytest.mark.parametrize("placement", ["k1 in the reward", "k3 in the reward", "k3 in the loss"])
def test_expected_gradients_are_the_mean_of_per_sample_gradients(placement):
    """The enumeration is what sampling averages to: draw y ~ pi, differentiate each sample's
    own loss term (for the reward, the score-function term k(y) log pi(y) with k held fixed)."""
    logits, ref_logits = _two_categoricals(seed=5, V=5)
    pi = torch.softmax(logits, -1)
    counts = torch.bincount(torch.multinomial(pi, 40_000, replacement=True,
                                              generator=torch.Generator().manual_seed(0)), minlength=5)
    mean = torch.zeros(5, dtype=torch.float64)
    for y in range(5):
        theta = logits.double().requires_grad_(True)
        logp = torch.log_softmax(theta, -1)[y]
        ref_logp = torch.log_softmax(ref_logits.double(), -1)[y]
        log_rho = ref_logp - logp
        if placement == "k1 in the reward":
            loss = (-log_rho).detach() * logp
        elif placement == "k3 in the reward":
            loss = (torch.expm1(log_rho) - log_rho).detach() * logp
        else:
            loss = torch.expm1(log_rho) - log_rho
        mean += counts[y] / counts.sum() * torch.autograd.grad(loss, theta)[0]
    expected = expected_kl_gradients(logits, ref_logits)[placement].double()
    torch.testing.assert_close(mean, expected, atol=0.02, rtol=0)


def test_every_placement_is_returned_with_the_two_true_gradients():
    grads = expected_kl_gradients(*_two_categoricals(seed=6, V=4))
    assert set(grads) == set(KL_PLACEMENTS) | {"reverse KL", "forward KL"}
    assert all(g.shape == (4,) for g in grads.values())


@pytest.mark.parametrize("logits, ref_logits, message", [
    (torch.zeros(2, 4), torch.zeros(2, 4), "shape \\(V,\\)"),
    (torch.zeros(1), torch.zeros(1), "V >= 2"),
    (torch.zeros(4), torch.zeros(5), "shape mismatch"),
    (torch.tensor([0.0, float("nan"), 1.0]), torch.zeros(3), "logits contains NaN"),
])
def test_expected_kl_gradients_rejects_bad_input(logits, ref_logits, message):
    with pytest.raises(ValueError, match=message):
        expected_kl_gradients(logits, ref_logits)


def test_kl_loss_term_is_half_the_squared_log_ratio_and_zero_on_agreement():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -0.5]])
    torch.testing.assert_close(kl_loss_term(lp, ref), torch.tensor([[0.0, 1.125]]))
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_loss_term(lp, ref[:, :1])


def test_expected_term_gradient_refuses_a_term_of_the_wrong_shape_or_without_gradient():
    logits, ref_logits = _two_categoricals(seed=7, V=5)
    with pytest.raises(ValueError, match="one loss per outcome, shape \\(5,\\)"):
        expected_term_gradient(lambda lp, ref: (lp - ref).sum(), logits, ref_logits)
    with pytest.raises(ValueError, match="does not depend on the log-probabilities"):
        expected_term_gradient(lambda lp, ref: (lp - ref).detach(), logits, ref_logits)


def test_the_adaptive_controller_steers_to_its_own_target():
    # Ziegler et al.: e = clip(KL / target - 1, -0.2, 0.2), beta <- beta (1 + e n / horizon)
    controller = AdaptiveKLController(0.1, target=2.0, horizon=10_000)
    controller.update(2.2, n_steps=10_000)  # e = +0.1, n / horizon = 1
    assert controller.value == pytest.approx(0.11)
