"""Checkers for lesson 2: the clipped surrogate objective and the clip fraction."""

from __future__ import annotations

import math

import torch

from ppo_edu.exercises._harness import (
    checker,
    describe_type,
    float_hint,
    gradient,
    nan_hint,
    no_gradient_hint,
    standardised,
)
from ppo_edu.objectives import clipped_surrogate

EPSILON = 0.2


def clipped_objective_reference(logprobs, old_logprobs, advantages, epsilon=EPSILON):
    """L^CLIP alone (the scalar to maximise), the signature lesson 2's exercise uses."""
    return clipped_surrogate(logprobs, old_logprobs, advantages, epsilon).objective


def clip_fraction_reference(logprobs, old_logprobs, epsilon=EPSILON):
    ratio = torch.exp(logprobs - old_logprobs)
    return ((ratio - 1).abs() > epsilon).float().mean()


_OLD_LOGPROB = -1.0  # every single-sample case's old log-probability


def _one(ratio: float, adv: float):
    old = torch.tensor([_OLD_LOGPROB])
    new = (old + torch.log(torch.tensor([ratio]))).requires_grad_()
    return new, old, torch.tensor([adv])


def _clip(ratio: float, eps: float) -> float:
    return min(max(ratio, 1 - eps), 1 + eps)


def _log_quotient(ratio: float) -> float:
    """logprobs / old_logprobs on the single-sample case of this ratio."""
    return (_OLD_LOGPROB + math.log(ratio)) / _OLD_LOGPROB


# Typical wrong answers, each as a formula for one term, and the hint it deserves.
_MISTAKES = [
    (lambda r, a, e: r * a, "you returned r·A everywhere: the clip never acts (did you forget it?)"),
    (lambda r, a, e: _clip(r, e) * a,
     "you used clip(r)·A alone; take the min with r·A so that moves that make the objective "
     "worse are never clipped away"),
    (lambda r, a, e: max(r * a, _clip(r, e) * a), "you took the max; L^CLIP takes the min (a pessimistic bound)"),
    (lambda r, a, e: min(r, _clip(r, e)) * a,
     # the same terms as r clipped at 1+ε only, r.clamp(max=1+ε)·A: name both
     ("your terms are min(r, 1+ε)·A: A taken out of the min, min(r, clip(r))·A, or r clipped at "
      "1+ε only. min(r, clip(r))·A equals min(r·A, clip(r)·A) only for A > 0 (for A < 0 it is "
      "the max): clip r on both sides and keep A inside both terms of the min")),
    (lambda r, a, e: min(r * a, min(max(r * a, 1 - e), 1 + e)), "clip the ratio r, not the product r·A"),
    (lambda r, a, e: min(r * a, r * min(max(a, -e), e)),
     ("you clipped the advantages to [−ε, ε]; clip the ratio r to [1−ε, 1+ε]: the clip limits "
      "how far the policy moves from π_θold, whatever the size of A")),
    # clip(r)·|A| and a clip at 1+ε only give the same terms for every r and A: name both
    (lambda r, a, e: min(r * a, _clip(r, e) * abs(a)),
     ("for A < 0 your terms are r·A, never clipped: clip the ratio on both sides, "
      "clip(r, 1−ε, 1+ε), for both signs of A, and multiply it by A itself (if you used |A|, "
      "that is the culprit)")),
    (lambda r, a, e: -min(r * a, _clip(r, e) * a),
     ("you returned −L^CLIP, a loss to minimise; the exercise asks for L^CLIP itself, the "
      "objective to maximise (the trainer puts the minus sign in the loss)")),
    (lambda r, a, e: 0.0,
     ("your L^CLIP is 0 for every single sample. Normalising the advantages inside L^CLIP "
      "does that (a lone A minus its mean is 0): L^CLIP takes A as given, normalising is the "
      "trainer's job, once per minibatch")),
    (lambda r, a, e: min(a / r, _clip(1 / r, e) * a),
     ("your ratio is upside down, π_θold / π_θ = exp(old_logprobs − logprobs); r_t(θ) is "
      "π_θ / π_θold = exp(logprobs − old_logprobs)")),
    # logprobs / old_logprobs, with old_logprobs = -1 as in every single-sample case
    (lambda r, a, e: min(_log_quotient(r) * a, _clip(_log_quotient(r), e) * a),
     ("your ratio is logprobs / old_logprobs, a quotient of log-probabilities; r_t(θ) is the "
      "quotient of the probabilities, π_θ / π_θold = exp(logprobs − old_logprobs)")),
    # r.clamp(min=1−ε): for A < 0 that is the right side, for A > 0 nothing is ever clipped
    (lambda r, a, e: min(r * a, max(r, 1 - e) * a),
     ("for A > 0 your terms are r·A, never clipped: you clipped r at 1−ε only (r.clamp(min=1−ε)?). "
      "Clip it on both sides, clip(r, 1−ε, 1+ε): for A > 0 the min then stops the objective "
      "growing once r passes 1+ε")),
]

_INSIDE_NORMALISATION = (
    "you normalised the advantages inside L^CLIP: it takes A as given (normalising is the "
    "trainer's job, once per minibatch)")


def _scalar_hint(got) -> str | None:
    """The hint for an L^CLIP that is not one number in a 0-dimensional tensor, else None."""
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return f"L^CLIP is one number (a mean over samples); you returned {describe_type(got)}"
    if got.dim() != 0:  # the exercise asks for a 0-d scalar, what .mean() returns (shape (1,) would also backprop)
        if got.shape == (1,):  # the single-sample cases' shape: the mean may be missing
            return ("L^CLIP is one number, a 0-dimensional tensor (shape (), what .mean() over every "
                    "sample returns); you returned a tensor of shape (1,): did you leave out the mean, "
                    "or keep its dimension (keepdim=True)?")
        return (f"L^CLIP is one number, a 0-dimensional tensor (shape (), what .mean() over every "
                f"sample returns); you returned {describe_type(got)}")
    return None


def _dual_clip_bound(results: list[tuple[float, float, float]], eps: float) -> float | None:
    """The c of Ye et al.'s dual clip, max(min(r·A, clip(r)·A), c·A) for A < 0, if that formula
    reproduces every (r, A, got) triple with one c > 1 read off a term it changed, else None."""
    def clip_term(r, a):
        return min(r * a, _clip(r, eps) * a)

    changed = [(a, got) for r, a, got in results if abs(got - clip_term(r, a)) >= 1e-4]
    if not changed or any(a >= 0 for a, _ in changed):
        return None
    c = changed[0][1] / changed[0][0]
    if c <= 1 or not all(abs(got - (max(clip_term(r, a), c * a) if a < 0 else clip_term(r, a))) < 1e-4
                         for r, a, got in results):
        return None
    return c


def _diagnose(results: list[tuple[float, float, float]], eps: float) -> str | None:
    """Name the mistake whose formula reproduces every (r, A, got) triple, if one does."""
    for formula, hint in _MISTAKES:
        if all(abs(got - formula(r, a, eps)) < 1e-4 for r, a, got in results):
            return hint
    if (c := _dual_clip_bound(results, eps)) is not None:
        return (f"for A < 0 your terms are bounded below by {c:g}·A: that is the dual clip (Ye et al. "
                f"2020), max(min(r·A, clip(r)·A), {c:g}·A) (c = 3 in the paper), another objective. The "
                "exercise asks for PPO's L^CLIP, min(r·A, clip(r)·A), with no lower bound: leave out "
                "the max")
    return None


def _gradient_hint(ratio: float, adv: float, eps: float, grad: float) -> str | None:
    """The hint for L^CLIP's gradient ``grad`` on one sample whose value is right, else None."""
    pushing_past = (adv > 0 and ratio > 1 + eps) or (adv < 0 and ratio < 1 - eps)
    inside = 1 - eps <= ratio <= 1 + eps
    want = 0.0 if pushing_past else ratio * adv
    if abs(grad - want) <= 1e-4:
        return None
    said = f"for r = {ratio}, A = {adv} the gradient should be {want:.3f}"
    yours = f", yours is {grad:.3f}"
    if pushing_past:
        return said + " (the sample is clipped: it must stop pushing)" + yours
    if want != 0 and abs(grad + want) < 1e-4:
        return (said + yours + ": the same size with the sign flipped. Your L^CLIP has the right "
                "values but falls where it should rise, so gradient ascent on it would make the "
                "policy worse: where the value is put together from a detached part and a part "
                "that carries the gradient, check the sign of the second")
    if inside:
        halved = want != 0 and abs(grad - want / 2) < 1e-4
        return (said + " (inside the clip range L^CLIP's gradient equals L^CPI's)" + yours
                + ("; half: inside the range the two terms tie and torch.minimum splits the "
                   "gradient between them, so your clipped term carries none (.detach() on "
                   "it, or a clip that is not differentiable?)" if halved else ""))
    side = "below 1−ε with A > 0" if ratio < 1 - eps else "above 1+ε with A < 0"
    return (said + f" (r is outside [{1 - eps:g}, {1 + eps:g}], but {side}: the min picks the "
            "unclipped term r·A, so the gradient is L^CPI's, d(r·A)/d logprob = r·A)" + yours
            + ("; your unclipped term r·A carries no gradient (.detach() on it, or on the "
               "ratio it uses?)" if abs(grad) < 1e-6 else ""))


@checker("clipped surrogate L^CLIP", reference=clipped_objective_reference)
def check_clipped_objective(fn):
    eps = EPSILON
    results, first_wrong, gradient_wrong = [], None, None
    # 4 and 20: far out, where a dual clip, max with c·A for A < 0, differs (c = 3 at 4, c < 20 at 20)
    for ratio in (0.5, 0.9, 1.0, 1.1, 1.5, 4.0, 20.0):
        for adv in (1.0, -1.0, 2.5, -0.7):
            new, old, a = _one(ratio, adv)
            got = fn(new, old, a, eps)
            if (hint := float_hint(got, "L^CLIP")) is not None:
                return hint
            if (hint := _scalar_hint(got)) is not None:
                return hint
            want = clipped_objective_reference(new.detach(), old, a, eps).item()
            if not math.isfinite(got.item()):
                return (f"for a single sample (r = {ratio}, A = {adv}) your L^CLIP is {got.item()}. "
                        "If you normalise the advantages inside L^CLIP, that is the cause (the std of "
                        "one sample is nan): L^CLIP takes A as given, normalising is the trainer's "
                        "job, once per minibatch")
            results.append((ratio, adv, got.item()))
            if not abs(got.item() - want) <= 1e-5:
                first_wrong = first_wrong or (ratio, adv, want, got.item())
                continue
            if gradient_wrong is not None:  # one is enough; the values are still all checked
                continue
            # a wrong gradient is told only where every value is right: a wrong value (an
            # upside-down ratio, say, right at r = 1 alone) names the mistake better
            grad = gradient(got, new)
            if grad is None:
                gradient_wrong = no_gradient_hint("your L^CLIP")
            else:
                gradient_wrong = _gradient_hint(ratio, adv, eps, grad.item())
    if first_wrong is not None:
        ratio, adv, want, got = first_wrong
        where = (f"for A {'>' if adv > 0 else '<'} 0, r = {ratio} (ε = {eps}) the term is {want:.3f}, "
                 f"you returned {got:.3f}")
        hint = _diagnose(results, eps)
        return f"{where}: {hint}" if hint else where
    if gradient_wrong is not None:
        return gradient_wrong
    g = torch.Generator().manual_seed(2)
    old = torch.randn(64, generator=g) - 1
    new = old + 0.4 * torch.randn(64, generator=g)
    adv = torch.randn(64, generator=g)
    got, want = fn(new, old, adv, 0.1), clipped_objective_reference(new, old, adv, 0.1)
    if (hint := _scalar_hint(got)) is not None:
        return "on a batch of 64: " + hint
    if (hint := nan_hint(got, "on a batch of 64 your L^CLIP")) is not None:
        return hint
    if torch.isclose(got.float().reshape(()), want * 64, atol=1e-4):
        return "on a batch of 64 you summed; Ê_t is a mean"
    if any(torch.isclose(got.float().reshape(()), clipped_objective_reference(new, old, normalised, 0.1),
                         atol=1e-4) for normalised in standardised(adv)):
        return "on a batch of 64 " + _INSIDE_NORMALISATION
    if torch.isclose(got.float().reshape(()), want, atol=1e-5):
        return None
    expected = f"with ε = 0.1 on a batch of 64 expected {want.item():.5f}, got {got.item():.5f}"
    if torch.isclose(got.float().reshape(()), clipped_objective_reference(new, old, adv, 0.2), atol=1e-5):
        return expected + ", L^CLIP at ε = 0.2: is ε hard-coded instead of taken from the argument?"
    ratio = torch.exp(new - old)
    terms = (ratio * adv, torch.clamp(ratio, 1 - 0.1, 1 + 0.1) * adv)
    if any(torch.isclose(got.float().reshape(()), value, atol=1e-5)
           for value in (torch.minimum(*(t.mean() for t in terms)), torch.min(torch.stack(terms)))):
        return (expected + ": take the min sample by sample, inside the mean, E[min(r A, clip(r) A)], "
                "not the min of the two means nor one min over the whole batch (on one sample, as in "
                "the earlier cases, those agree; on a batch they do not)")
    return expected


# 4 of 7 outside [0.8, 1.2]; upside down (pi_old / pi) 5 of 7, since 1 / 0.82 > 1.2
_FRACTION_RATIOS = (0.5, 0.7, 0.82, 1.0, 1.1, 1.3, 2.0)


def _upside_down(fn) -> bool:
    """Confirm on a single ratio of 1.22: outside [0.8, 1.2], while 1 / 1.22 = 0.82 is inside.
    (Comparing |log r| with log(1 + eps) counts as many of the fixed ratios, but counts this one.)"""
    try:
        return float(fn(torch.log(torch.tensor([1.22])), torch.zeros(1), EPSILON)) == 0.0
    except Exception:  # noqa: BLE001 - a bonus check: the plain hint still follows
        return False


@checker("clip fraction", reference=clip_fraction_reference)
def check_clip_fraction(fn):
    n = len(_FRACTION_RATIOS)
    old = torch.zeros(n)
    new = torch.log(torch.tensor(_FRACTION_RATIOS))
    got = fn(new, old, EPSILON)
    want = float(clip_fraction_reference(new, old, EPSILON))
    if type(got).__module__ == "numpy":  # first: numpy's float64 is also a Python float
        return ("return the clip fraction as a 0-dimensional torch tensor, as the exercise asks "
                f"(you returned a numpy {type(got).__name__}: stay in torch, no .numpy())")
    if isinstance(got, (int, float)):
        return ("return the clip fraction as a 0-dimensional tensor, as the exercise asks "
                f"(you returned a Python {type(got).__name__}: leave out the .item())")
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return f"the clip fraction is one number in [0, 1]; you returned {describe_type(got)}"
    if got.dim() != 0:
        return ("return the clip fraction as a 0-dimensional tensor (shape (), what .mean() over every "
                f"sample returns), as the exercise asks; you returned {describe_type(got)}: no "
                "keepdim=True, no reshape")
    got = float(got)
    if not math.isfinite(got):
        return f"the clip fraction is a share in [0, 1]; you returned {got}"
    if abs(got - 2 / n) < 1e-6:
        return "count ratios with |r − 1| > ε on both sides: below 1−ε as well as above 1+ε"
    if abs(got - want * n) < 1e-6:
        return "you returned a count; the clip fraction is the share of samples, in [0, 1]"
    if abs(got - float(clip_fraction_reference(old, new, EPSILON))) < 1e-6 and _upside_down(fn):
        return ("your ratio is upside down: r_t(θ) = π_θ / π_θold = exp(logprobs − old_logprobs), "
                "you used exp(old_logprobs − logprobs)")
    if abs(got - (1 - want)) < 1e-6:
        return ("you returned the share of ratios inside [1−ε, 1+ε]; the clip fraction is the "
                "share outside it, where the clip acts")
    if abs(got - want) > 1e-6:
        listed = ", ".join(f"{r:g}" for r in _FRACTION_RATIOS)
        return f"ratios {listed} with ε = 0.2 should give {want:.3f}, got {got:.3f}"
    wide = float(fn(new, old, 0.6))
    if abs(wide - 2 / n) < 1e-6:
        return ("with ε = 0.6 only r = 2.0 is outside [0.4, 1.6], you also counted r = 0.5: "
                "compare the ratio r = exp(logprobs − old_logprobs) with 1, not the log-ratio")
    if abs(wide - 1 / n) > 1e-6:
        return "with ε = 0.6 only r = 2.0 is outside [0.4, 1.6]: is ε hard-coded?"
    return None
