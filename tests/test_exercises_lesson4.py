"""Lesson 4 checkers: reject the stub and typical wrong answers, accept correct solutions."""

from __future__ import annotations

import pytest
import torch

from ppo_edu.exercises.lesson4 import check_explained_variance, check_value_loss
from ppo_edu.ppo import clipped_value_loss, explained_variance


def stub(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your solution")


def my_value_loss(values, old_values, returns, epsilon):
    v_clipped = old_values + (values - old_values).clamp(-epsilon, epsilon)
    return 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2).mean()


def my_explained_variance(predictions, targets):
    var = targets.var()
    if var == 0:
        return float("nan")
    return (1 - (targets - predictions).var() / var).item()


def test_stubs_fall_back_to_the_reference(capsys):
    assert check_value_loss(stub) is clipped_value_loss
    assert check_explained_variance(stub) is explained_variance
    assert capsys.readouterr().out.count("not implemented yet") == 2


def test_solutions_pass_and_are_returned(capsys):
    assert check_value_loss(my_value_loss) is my_value_loss
    assert check_explained_variance(my_explained_variance) is my_explained_variance
    out = capsys.readouterr().out
    assert out.count("✅") == 2


def test_the_references_pass():
    assert check_value_loss.verify(clipped_value_loss) is None
    assert check_explained_variance.verify(explained_variance) is None


def test_unclipped_value_loss_is_named():
    hint = check_value_loss.verify(lambda v, old, r, eps: 0.5 * ((v - r) ** 2).mean())
    assert "plain 0.5 * (V - R)^2" in hint


def test_min_instead_of_max_is_named():
    def wrong(v, old, r, eps):
        c = old + (v - old).clamp(-eps, eps)
        return 0.5 * torch.min((v - r) ** 2, (c - r) ** 2).mean()

    assert "max of the two" in check_value_loss.verify(wrong)


def test_forgetting_to_add_old_values_back_is_named():
    def wrong(v, old, r, eps):
        c = (v - old).clamp(-eps, eps)
        return 0.5 * torch.max((v - r) ** 2, (c - r) ** 2).mean()

    assert "add old_values back" in check_value_loss.verify(wrong)


def test_missing_half_is_named():
    assert "factor of 2" in check_value_loss.verify(lambda *a: 2 * my_value_loss(*a))


def test_detached_loss_is_rejected():
    assert "no gradient" in check_value_loss.verify(lambda *a: my_value_loss(*a).detach())


def test_swapped_explained_variance_is_named():
    hint = check_explained_variance.verify(lambda p, t: my_explained_variance(t, p))
    assert "swapped" in hint


def test_mean_square_instead_of_variance_is_named():
    def wrong(p, t):
        return (1 - ((t - p) ** 2).mean() / t.var(unbiased=False)).item()

    assert "constant offset does not matter" in check_explained_variance.verify(wrong)


def test_constant_targets_must_give_nan():
    def wrong(p, t):
        var = t.var()
        return 0.0 if var == 0 else my_explained_variance(p, t)

    assert "nan" in check_explained_variance.verify(wrong)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("as_returned", [lambda x: x, lambda x: x.numpy()[()]],
                         ids=["tensor", "numpy scalar"])
def test_explained_variance_as_a_tensor_or_numpy_scalar_is_accepted(as_returned):
    """1 - Var[t - p] / Var[t] as a 0-d tensor or numpy scalar, nan for constant targets."""
    def natural(predictions, targets):
        if targets.var() == 0:
            return as_returned(torch.tensor(float("nan")))
        return as_returned(1 - (targets - predictions).var() / targets.var())

    assert check_explained_variance.verify(natural) is None


def test_explained_variance_as_a_one_element_tensor_is_named():
    # float() takes a (1,) tensor, but the lesson's f"{ev:.3f}" then raises a TypeError
    def one_element(predictions, targets):
        var = targets.flatten().var(0, keepdim=True)
        return 1 - (targets - predictions).flatten().var(0, keepdim=True) / var

    assert "got a tensor of shape (1,)" in check_explained_variance.verify(one_element)


def test_constant_targets_with_varying_predictions_must_give_nan():
    """Without the check, Var[t - p] / 0 is inf: 1 - inf = -inf, not "undefined"."""
    def unguarded(p, t):
        return 1 - (t - p).var() / t.var()

    hint = check_explained_variance.verify(unguarded)
    assert "return float('nan'), got tensor(-inf)" in hint


def test_averaging_per_environment_explained_variances_is_named():
    def per_env(p, t):
        if p.dim() == 1:
            return my_explained_variance(p, t)
        return float((1 - (t - p).var(0) / t.var(0)).mean())

    assert "one explained variance per environment" in check_explained_variance.verify(per_env)


@pytest.mark.parametrize("unbiased", [False, True])
def test_r_squared_is_named_in_either_variance_convention(unbiased):
    def r2(p, t):
        return float(1 - ((t - p) ** 2).mean() / t.var(unbiased=unbiased))

    assert "(that is R^2)" in check_explained_variance.verify(r2)


@pytest.mark.parametrize("error_unbiased", [False, True])
def test_mixing_n_and_n_minus_1_is_named(error_unbiased):
    def mixed(p, t):
        return float(1 - (t - p).var(unbiased=error_unbiased) / t.var(unbiased=not error_unbiased))

    assert "divides by n - 1 and the other by n" in check_explained_variance.verify(mixed)


def test_squared_correlation_and_the_unexplained_share_are_named():
    def corr2(p, t):
        return float(torch.corrcoef(torch.stack([p.flatten(), t.flatten()]))[0, 1] ** 2)

    assert "squared correlation" in check_explained_variance.verify(corr2)
    unexplained = check_explained_variance.verify(lambda p, t: 1 - my_explained_variance(p, t))
    assert "unexplained share" in unexplained


def test_detaching_values_inside_the_clamp_is_named():
    # right value everywhere, but inside +-eps only half the gradient (or none) reaches V
    def wrong(v, old, r, eps):
        c = old + (v.detach() - old).clamp(-eps, eps)
        return 0.5 * torch.max((v - r) ** 2, (c - r) ** 2).mean()

    hint = check_value_loss.verify(wrong)
    assert hint is not None and "do not detach V in V_clip" in hint


def test_a_loss_with_zero_gradient_is_rejected():
    def wrong(v, old, r, eps):
        return my_value_loss(v.detach(), old, r, eps) + 0.0 * v.sum()

    assert "zero gradient" in check_value_loss.verify(wrong)


def test_a_loss_rebuilt_from_a_number_is_rejected():
    def wrong(v, old, r, eps):
        return torch.tensor(my_value_loss(v, old, r, eps).item(), requires_grad=True)

    assert "no gradient with respect to values" in check_value_loss.verify(wrong)


def test_a_wrong_gradient_with_the_right_value_is_rejected():
    def wrong(v, old, r, eps):  # same value, twice the gradient
        loss = my_value_loss(v, old, r, eps)
        return loss.detach() + 2 * (loss - loss.detach())

    hint = check_value_loss.verify(wrong)
    assert hint is not None and "wrong gradient" in hint and "expected" in hint


def test_equivalent_formulations_pass():
    def with_where(v, old, r, eps):  # a different but correct way to write the max
        c = old + (v - old).clamp(-eps, eps)
        a, b = (v - r) ** 2, (c - r) ** 2
        return 0.5 * torch.where(a >= b, a, b).mean()

    def with_stack(v, old, r, eps):
        c = old + torch.clamp(v - old, min=-eps, max=eps)
        return 0.5 * torch.stack([(v - r) ** 2, (c - r) ** 2]).max(0).values.mean()

    assert check_value_loss.verify(with_where) is None
    assert check_value_loss.verify(with_stack) is None


def test_explained_variance_clamped_at_zero_is_rejected():
    # a critic worse than predicting the mean scores below 0 (the anti-critic -R scores -3):
    # clamping hides exactly the critic that is broken. Only the anti-critic case is negative
    def clamped(predictions, targets):
        return max(my_explained_variance(predictions, targets), 0.0)

    hint = check_explained_variance.verify(clamped)
    assert hint is not None and "for an anti-critic expected -3" in hint


def test_a_negated_value_loss_is_told_its_sign():
    hint = check_value_loss.verify(lambda v, old, r, eps: -my_value_loss(v, old, r, eps))
    assert hint is not None and "minus the loss" in hint and "with no minus sign" in hint, hint


def test_a_value_loss_returned_as_a_float_is_told_it_carries_no_gradient():
    hint = check_value_loss.verify(lambda v, old, r, eps: my_value_loss(v, old, r, eps).item())
    assert hint is not None and "a Python float (.item()) carries no gradient" in hint, hint
