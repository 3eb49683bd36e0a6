"""Checkers for lesson 1: the probability ratio and the CPI surrogate."""

from __future__ import annotations

import torch

from ppo_edu.exercises._harness import (
    checker,
    close,
    describe_type,
    first_mismatch,
    float_hint,
    gradient,
    no_gradient_hint,
    standardised,
)
from ppo_edu.objectives import cpi_surrogate, probability_ratio


def _cases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for shape in [(6,), (3, 4)]:
        old = torch.randn(shape, generator=g) - 1.0
        new = old + 0.3 * torch.randn(shape, generator=g)
        yield new.requires_grad_(), old


@checker("probability ratio r_t(θ)", reference=probability_ratio)
def check_ratio(fn):
    for new, old in _cases():
        got = fn(new, old)
        want = probability_ratio(new.detach(), old)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return f"expected a tensor of shape {tuple(want.shape)}, got {describe_type(got)}"
        if close(got, 1 / want):
            return "you computed pi_theta_old / pi_theta; r_t(θ) is pi_theta / pi_theta_old"
        if close(got, new.detach() - old):
            return "you returned the log-ratio log pi_theta - log pi_theta_old; exponentiate it"
        index = first_mismatch(got, want)
        if index is not None:
            return f"at index {index} expected {want[index].item():.4f}, got {got[index].item():.4f}"
        grad = gradient(got, new)
        if grad is None:
            return no_gradient_hint("your ratio")
        if not close(grad, want):
            return "your ratio has the right values but the wrong gradient: d r_t / d logprob_t is r_t"
    # log-probabilities of rare actions: exp() of each underflows to 0 and 0/0 = nan
    new, old = torch.tensor([-800.0, -1000.0]), torch.tensor([-801.0, -1000.5])
    got = fn(new, old)
    want = probability_ratio(new, old)
    if not close(got, want):
        return ("for logprobs -800 vs -801 expected r = e ≈ 2.718, got "
                f"{got[0].item():.4g}: exp(-800) underflows to 0, so divide in log space: "
                "r = exp(logprobs - old_logprobs)")
    return None


@checker("CPI surrogate L^CPI", reference=cpi_surrogate)
def check_cpi(fn):
    g = torch.Generator().manual_seed(1)
    for n in (8, 32):
        old = torch.randn(n, generator=g) - 1.0
        new = (old + 0.2 * torch.randn(n, generator=g)).requires_grad_()
        adv = torch.randn(n, generator=g)
        got = fn(new, old, adv)
        want = cpi_surrogate(new.detach(), old, adv)
        if (hint := float_hint(got, "L^CPI")) is not None:
            return hint
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return f"L^CPI is one number (a mean over samples); you returned {describe_type(got)}"
        if got.dim() != 0:  # the exercise asks for a 0-d scalar, what .mean() returns (shape (1,) would also backprop)
            return (f"L^CPI is one number, a 0-dimensional tensor (shape (), what .mean() over every "
                    f"sample returns); you returned {describe_type(got)}: no keepdim=True, no reshape")
        ratio = torch.exp(new.detach() - old)
        if torch.isclose(got.detach().float(), (ratio * adv).sum(), atol=1e-5):
            return "you summed over samples; Ê_t is a mean (with a sum the step size grows with the batch)"
        if torch.isclose(got.detach().float(), (new.detach() * adv).mean(), atol=1e-5):
            return ("you returned Ê[log pi_theta · A]: it has the same gradient at θ_old but it is not "
                    "L^CPI, and its value says nothing about improvement; use the ratio r_t(θ)")
        if torch.isclose(got.detach().float(), adv.mean(), atol=1e-5):
            return "your objective does not depend on θ: multiply the advantages by r_t(θ)"
        # the ratio checker's two mistakes, made again inside L^CPI
        if torch.isclose(got.detach().float(), ((new.detach() - old) * adv).mean(), atol=1e-5):
            return ("you used the log-ratio log pi_theta - log pi_theta_old where L^CPI needs the "
                    "ratio r_t(θ) = exp(log pi_theta - log pi_theta_old)")
        if torch.isclose(got.detach().float(), (adv / ratio).mean(), atol=1e-5):
            return "your ratio is upside down, pi_theta_old / pi_theta; r_t(θ) is pi_theta / pi_theta_old"
        if any(torch.isclose(got.detach().float(), cpi_surrogate(new.detach(), old, normalised),
                             atol=1e-5) for normalised in standardised(adv)):
            return ("you normalised the advantages inside L^CPI: it takes A as given "
                    "(normalising them is the trainer's job: here collect_batch does it once per batch, "
                    "lesson 4's PPO once per minibatch)")
        if not torch.isclose(got.detach().float(), want, atol=1e-5):
            if torch.isclose(got.detach().float(), -want, atol=1e-5):
                return ("you returned -L^CPI, a loss to minimise; the exercise asks for L^CPI itself, "
                        "the objective to maximise (the trainer puts the minus sign in the loss)")
            return f"expected {want.item():.5f}, got {got.item():.5f} on a batch of {n}"
        grad = gradient(got, new)
        if grad is None:
            return no_gradient_hint("your L^CPI") + ", so it cannot be optimised"
        if not torch.allclose(grad, ratio * adv / n, atol=1e-6):
            return "its gradient is wrong: d L^CPI / d logprob_t should be r_t A_t / n"
    # log-probabilities of rare actions, as in the ratio's check: exp() of each underflows to
    # 0 and 0/0 = nan, so exp(logprobs) / exp(old_logprobs) fails here only
    new, old = torch.tensor([-800.0, -1000.0]), torch.tensor([-801.0, -1000.5])
    adv = torch.tensor([1.0, 1.0])
    got = fn(new, old, adv)
    want = cpi_surrogate(new, old, adv)
    if not (isinstance(got, torch.Tensor) and got.numel() == 1
            and torch.isclose(got.detach().float().reshape(()), want, atol=1e-5)):
        shown = f"{got.item():.4g}" if isinstance(got, torch.Tensor) and got.numel() == 1 else describe_type(got)
        return ("for logprobs -800 vs -801 and -1000 vs -1000.5 (r = e ≈ 2.718 and e^0.5 ≈ 1.649, "
                f"A = 1 for both) expected L^CPI = {want.item():.4f}, got {shown}: exp(-800) "
                "underflows to 0, so divide in log space: r = exp(logprobs - old_logprobs)")
    return None
