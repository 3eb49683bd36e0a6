"""Checkers for lesson 4 (PPO on CartPole): the clipped value loss and explained variance."""

from __future__ import annotations

import math

import torch

from ppo_edu.exercises._harness import (
    backward,
    checker,
    describe_type,
    first_mismatch,
    float_hint,
    negated_value_loss_hint,
)
from ppo_edu.ppo import clipped_value_loss, explained_variance


def _value_cases():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(64, generator=g)
    returns = old + 2.0 * torch.randn(64, generator=g)
    values = old + 0.5 * torch.randn(64, generator=g)  # some inside, some outside +-eps
    yield "random", values, old, returns, 0.2
    # one sample per situation: (V moved, towards or away from R, within or beyond eps)
    old = torch.tensor([0.0, 0.0, 0.0, 0.0])
    returns = torch.tensor([5.0, 5.0, -5.0, 5.0])
    values = torch.tensor([3.0, -1.0, -0.1, 0.1])
    yield "hand-made", values, old, returns, 0.2
    yield "large epsilon", values, old, returns, 10.0


def _plain(values, old_values, returns, epsilon):
    return 0.5 * ((values - returns) ** 2).mean()


def _min_instead_of_max(values, old_values, returns, epsilon):
    clipped = old_values + torch.clamp(values - old_values, -epsilon, epsilon)
    return 0.5 * torch.minimum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def _max_of_means(values, old_values, returns, epsilon):
    clipped = old_values + torch.clamp(values - old_values, -epsilon, epsilon)
    return 0.5 * torch.maximum(((values - returns) ** 2).mean(), ((clipped - returns) ** 2).mean())


def _clipped_difference_only(values, old_values, returns, epsilon):
    clipped = torch.clamp(values - old_values, -epsilon, epsilon)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def _clip_around_new(values, old_values, returns, epsilon):
    clipped = values + torch.clamp(old_values - values, -epsilon, epsilon)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def _old_values_unclamped(values, old_values, returns, epsilon):
    return 0.5 * torch.maximum((values - returns) ** 2, (old_values - returns) ** 2).mean()


_VALUE_LOSS_MISTAKES = (
    (_plain, "this is the plain 0.5 * (V - R)^2: clip V to old_values +- epsilon and take the "
             "larger of the two squared errors"),
    (_min_instead_of_max, "take the max of the two squared errors, not the min: like L^CLIP, the "
                          "bound must be pessimistic"),
    (_clipped_difference_only, "V_clip is old_values + clamp(values - old_values, -eps, eps): add "
                               "old_values back after clamping"),
    (_max_of_means, "take the max of the two squared errors sample by sample, inside the mean: "
                    "0.5 * mean(max(...)), not the max of the two means"),
    (_clip_around_new, "clip around the OLD value: V_clip = old_values + clamp(values - old_values, "
                       "-eps, eps) stays within eps of V_old (yours stays within eps of the new V)"),
    (_old_values_unclamped, "V_clip = old_values + clamp(values - old_values, -eps, eps), not "
                            "old_values itself: inside the clip range V_clip must follow V"),
)


def _value_loss_mistake(fn) -> str | None:
    """The hint of the first typical mistake that reproduces ``fn`` on every case, if any
    (on one case alone two mistakes can give the same number)."""
    for wrong, hint in _VALUE_LOSS_MISTAKES:
        for _, values, old, returns, eps in _value_cases():
            got = fn(values.clone(), old.clone(), returns.clone(), eps)
            if not torch.isclose(got.detach().reshape(()).float(), wrong(values, old, returns, eps),
                                 rtol=1e-4, atol=1e-6):
                break
        else:
            return hint
    return None


@checker("clipped value loss", clipped_value_loss)
def check_value_loss(fn):
    """``fn(values, old_values, returns, epsilon)`` -> scalar loss (to minimise)."""
    for name, values, old, returns, eps in _value_cases():
        v = values.clone().requires_grad_(True)
        got = fn(v, old.clone(), returns.clone(), eps)
        expected = clipped_value_loss(values, old, returns, eps)
        if (hint := float_hint(got, "the value loss")) is not None:
            return hint
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return f"return a scalar tensor (the mean loss), got {describe_type(got)}"
        value = got.detach().reshape(()).float()  # a float64 loss is fine; compare as float32
        if not torch.isclose(value, expected, rtol=1e-4, atol=1e-6):
            if torch.isclose(value, -expected, rtol=1e-4, atol=1e-6):
                return negated_value_loss_hint(f"on the {name} case", value.item(), expected.item())
            if (hint := _value_loss_mistake(fn)) is not None:
                return hint
            if torch.isclose(value, expected * values.numel(), rtol=1e-4):
                return f"you summed over the {values.numel()} samples: the loss is a mean"
            if eps != 0.2 and torch.isclose(value, clipped_value_loss(values, old, returns, 0.2), rtol=1e-4):
                return f"called with epsilon={eps} you clipped at 0.2: is epsilon hard-coded?"
            if torch.isclose(value, 2 * expected, rtol=1e-4):
                return "off by a factor of 2: the loss is 0.5 * mean(max(...))"
            return f"on the {name} case expected {expected.item():.5f}, got {got.item():.5f}"
        if not got.requires_grad:
            return "the loss has no gradient: do not detach the new values"
        backward(got)
        if (hint := _gradient_hint(name, v.grad, values, old, returns, eps)) is not None:
            return hint
    return None


def _detached_in_clip(values, old_values, returns, epsilon):
    clipped = old_values + torch.clamp(values.detach() - old_values, -epsilon, epsilon)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def _grad(loss_fn, values, old, returns, eps) -> torch.Tensor:
    v = values.clone().requires_grad_(True)
    loss_fn(v, old, returns, eps).backward()
    return v.grad


def _gradient_hint(name, grad, values, old, returns, eps) -> str | None:
    """Compare d(loss)/d(values) with the reference's on the same inputs."""
    expected = _grad(clipped_value_loss, values, old, returns, eps)
    if grad is None:
        return ("the loss has no gradient with respect to values: build it from values "
                "with torch operations (no .item(), no .detach())")
    if grad.shape != expected.shape or not torch.isfinite(grad).all():
        return "the loss gives no finite gradient with respect to values"
    idx = first_mismatch(grad, expected, atol=1e-6, rtol=1e-4)
    if idx is None:
        return None
    if not grad.any():
        return ("the loss has zero gradient with respect to values: it must depend on them "
                "through (V - R)^2 and V_clip")
    if first_mismatch(grad, _grad(_detached_in_clip, values, old, returns, eps),
                      atol=1e-6, rtol=1e-4) is None:
        return ("gradient wrong inside +-epsilon: do not detach V in V_clip. "
                "V_clip = old_values + clamp(values - old_values, -eps, eps) must keep the "
                "gradient of values where the clamp is not active")
    i = idx[0]
    return (f"the loss has the right value but the wrong gradient: on the {name} case, "
            f"d loss / d values[{i}] = {float(grad[i]):.5f}, expected {float(expected[i]):.5f}")


def _r_squared(predictions, targets, unbiased):
    """1 - mean square error / Var[targets]: R^2, which a constant offset lowers."""
    return float(1 - ((targets - predictions) ** 2).mean() / targets.var(unbiased=unbiased))


def _mixed_conventions(predictions, targets, unbiased_error):
    """One variance with Bessel's n - 1, the other without."""
    error = (targets - predictions).var(unbiased=unbiased_error)
    return float(1 - error / targets.var(unbiased=not unbiased_error))


def _per_column_mean(predictions, targets):
    """The mean over environments of each environment's own explained variance."""
    error = (targets - predictions).var(dim=0, unbiased=False)
    return float((1 - error / targets.var(dim=0, unbiased=False)).mean())


def _explained_variance_hint(fn, name, got, predictions, targets) -> str | None:
    """Name the mistake: match the learner's answers against typical wrong formulas.

    The formulas can agree on the failing case (predicting the mean, the error has mean 0:
    R^2 and a mix of n and n - 1 give the same number), so they are told apart on a
    critic that is shrunk, offset and noisy at once."""
    def near(value, answer):
        return math.isclose(answer, value, rel_tol=1e-3, abs_tol=1e-4)

    if predictions.dim() == 2 and near(_per_column_mean(predictions, targets), got):
        return (f"on {name} you averaged one explained variance per environment (a variance "
                "over dim=0): the lesson wants one number over every entry (.var() with no "
                "dim). Environments whose returns have different scales count differently")
    g = torch.Generator().manual_seed(3)
    y = torch.randn(30, generator=g) * 2
    p = 0.5 * y + 1.0 + torch.randn(30, generator=g)  # shrunk, offset and noisy
    try:
        answer = float(fn(p.clone(), y.clone()))
    except Exception:  # noqa: BLE001 - the hint is a bonus: the plain message below still helps
        return None
    if near(1 - explained_variance(p, y), answer):
        return ("you returned the unexplained share Var[targets - predictions] / Var[targets]: "
                "explained variance is 1 minus it")
    if near(explained_variance(y, p), answer):
        return ("you swapped predictions and targets: divide by Var[targets], the "
                "returns the critic is trying to predict")
    if any(near(_r_squared(p, y, unbiased), answer) for unbiased in (False, True)):
        return ("you divided the mean square of the error by Var[targets] (that is R^2): "
                "use Var[targets - predictions], so that a constant offset does not matter")
    if any(near(_mixed_conventions(p, y, unbiased), answer) for unbiased in (False, True)):
        return ("one of your two variances divides by n - 1 and the other by n: use the "
                "same .var() for both (the ratio is then the same either way)")
    if near(float(torch.corrcoef(torch.stack([p, y]))[0, 1] ** 2), answer):
        return ("you returned the squared correlation: it forgives a critic that is off by a "
                "factor (V = R / 2 scores 1). Use 1 - Var[targets - predictions] / Var[targets]")
    return None


@checker("explained variance", explained_variance)
def check_explained_variance(fn):
    """``fn(predictions, targets)`` -> float."""
    g = torch.Generator().manual_seed(1)
    targets = torch.randn(200, generator=g) * 3 + 1
    # the lesson calls it on a (T, N) rollout: one number over every entry. Environments of
    # different scales, so that averaging per-environment numbers gives a different answer
    scales = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])
    rollout_targets = targets.reshape(40, 5) * scales + torch.tensor([0.0, 5.0, -3.0, 10.0, 1.0])
    rollout_noise = torch.randn(40, 5, generator=torch.Generator().manual_seed(2)) * 1.5
    rollout_predictions = rollout_targets + rollout_noise
    cases = [
        ("perfect critic", targets.clone(), targets, 1.0),
        ("predicting the mean", torch.full_like(targets, targets.mean().item()), targets, 0.0),
        ("a noisy critic", targets + torch.randn(200, generator=g), targets, None),
        ("a biased critic", targets + 5.0, targets, 1.0),
        ("an anti-critic", -targets, targets, None),
        ("a (T, N) = (40, 5) rollout", rollout_predictions, rollout_targets, None),
    ]
    for name, predictions, y, known in cases:
        rollout = predictions.dim() == 2
        try:
            got = fn(predictions.clone(), y.clone())
        except (RuntimeError, IndexError) as exc:
            if not rollout:
                raise
            return (f"on {name} your function raised {type(exc).__name__}: {exc}. The lesson calls "
                    "it on (T, N) tensors: take the variances over every entry (.var() with no dim)")
        expected = explained_variance(predictions, y)
        over = " (one number over every entry)" if rollout else ""
        if isinstance(got, torch.Tensor) and got.dim() > 0:  # float() takes a (1,) tensor; an f-string does not
            return (f"for {name} return one number{over}: a Python float or a 0-d tensor, got a tensor "
                    f"of shape {tuple(got.shape)}")
        try:
            got = float(got)
        except (TypeError, ValueError, RuntimeError):
            return f"for {name} return one number{over}, got {describe_type(got)}"
        if not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-4):
            if (hint := _explained_variance_hint(fn, name, got, predictions, y)) is not None:
                return hint
            note = f" (should be {known:g})" if known is not None else ""
            return f"for {name} expected {expected:.4f}{note}, got {got:.4f}"
    # targets that do not vary: undefined, whatever the predictions (which may vary)
    for predictions in (torch.ones(5), torch.tensor([0.0, 2.0, 1.0, -1.0, 3.0])):
        try:
            constant = fn(predictions, torch.ones(5))
        except ZeroDivisionError:
            return ("when the targets do not vary, Var[targets] = 0 and your function divided "
                    "by it: check for that case and return float('nan')")
        try:  # float('nan'), a tensor(nan) or a numpy nan: all say "undefined"
            undefined = math.isnan(float(constant))
        except (TypeError, ValueError):
            undefined = False
        if not undefined:
            return ("when the targets do not vary, explained variance is undefined, whatever "
                    f"the predictions: return float('nan'), got {constant!r} for predictions "
                    f"{predictions.tolist()} and targets of all ones")
    return None


__all__ = ["check_value_loss", "check_explained_variance"]
