"""The KL penalty that keeps the policy near the reference model, and its controller.

RLHF maximises  E[score(x, y)] - beta KL(pi_theta(.|x) || pi_ref(.|x)).  The sequence KL
is a sum over response tokens, and with y sampled from pi_theta each token gets a
per-token estimate (J. Schulman, "Approximating KL divergence", 2020), with
log r_t = log pi_ref(y_t|...) - log pi_theta(y_t|...):

- k1 = -log r_t = log pi_theta - log pi_ref. Unbiased; a single token can be negative, and
  so can a batch mean when the true KL is small; only its expectation cannot.
- k3 = (r_t - 1) - log r_t. Unbiased too, and never negative, at the price of more
  variance where pi_theta and pi_ref differ a lot. Unbiased for the KL's *value*, not for
  its gradient: put in the reward, its expected pull on each token is grad KL(pi_theta ||
  pi_ref) - grad KL(pi_ref || pi_theta), which nearly vanishes near the reference (see
  :func:`expected_kl_gradients`, row "k3 in the reward"). Penalise with k1; the trainer
  takes k3 (as TRL's PPO does) and warns.

The penalty subtracts beta * kl_t from each token's reward, and the KL this course
*reports* is the very tensor the penalty used (summed per sample, averaged over the
batch), not a second estimate computed elsewhere: TRL #1161 reported one and penalised
another. A clearly negative mean of k1 is not "the policy got closer than identical":
it means the tokens were not sampled from pi_theta (top-k/top-p, a temperature missing
from the log-probs, dropout on in one pass only). :func:`warn_if_negative` warns about a
batch mean below -0.5 nats; ``RLHFTrainer.step`` calls it on every k1 batch (TRL #351).
:func:`kl_penalty` itself does not warn.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from ppo_edu._checks import require_binary, require_finite, require_same_shape, require_tensor
from ppo_edu.rlhf.logprobs import require_temperature

ESTIMATORS = ("k1", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate between pi_theta and pi_ref on sampled tokens, 0 on padding.

    logprobs, ref_logprobs, mask: ``(B, R)``, the log-probabilities under pi_theta and
    pi_ref of the tokens pi_theta sampled. ``estimator``, with log rho = ref_logprobs -
    logprobs: ``"k1"``, -log rho (unbiased; negative on tokens pi_ref likes more), or
    ``"k3"``, (rho - 1) - log rho (unbiased and never negative). Returns ``(B, R)``; its
    row sums are the per-sample KL estimates. Padding may hold anything, -inf included; a
    real token's log-probability above 0 is refused (probabilities passed instead of logs).
    """
    require_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask)
    require_binary("mask", mask)
    real = mask.bool()
    require_token_logprobs(real, logprobs=logprobs, ref_logprobs=ref_logprobs)
    # where, not "* mask": padding may hold anything (an inf log-prob after EOS times 0 is NaN)
    log_ratio = torch.where(real, ref_logprobs - logprobs, 0.0)  # log r_t, 0 on padding
    if estimator == "k1":
        kl = -log_ratio
    elif estimator == "k3":
        kl = torch.expm1(log_ratio) - log_ratio
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; use one of {ESTIMATORS}")
    return torch.where(real, kl, 0.0)


# log_softmax cannot exceed 0; the slack only allows for another kernel's rounding
LOGPROB_SLACK = 1e-4


def require_token_logprobs(real: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Refuse log-probabilities of tokens that are above 0 on real tokens (``real``, a bool
    mask of their shape). A token of a finite vocabulary has probability at most 1, so a
    positive log-probability is not one: most often the probabilities themselves were passed,
    whose k1 "KL" would be a difference of probabilities and train silently on nonsense."""
    for name, t in tensors.items():
        bad = real & (t > LOGPROB_SLACK)
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} must hold log-probabilities (<= 0) on real tokens, but it has "
                f"{t[index].item():.4g} at index {index}: were probabilities passed instead of "
                "their logs? (take torch.log_softmax of the logits, or .log() of probabilities)")


def sequence_kl(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample KL: the per-token estimates ``kl`` (B, R) summed over each response's real
    tokens (``mask`` (B, R), 1 on real tokens), shape (B,)."""
    # a (B, 1) or (R,) mask would broadcast and a 0.5 count as 1: checked, as in kl_penalty
    require_same_shape(kl=kl, mask=mask)
    if kl.dim() != 2:
        raise ValueError(f"kl and mask must have shape (B, R), responses x tokens, got {tuple(kl.shape)}")
    require_binary("mask", mask)
    return torch.where(mask.bool(), kl, 0.0).sum(1)


def warn_if_negative(mean_kl: float, threshold: float = -0.5) -> None:
    """Warn when the batch's mean KL estimate is clearly negative (see the module docstring)."""
    if mean_kl < threshold:
        warnings.warn(
            f"mean KL estimate is {mean_kl:.3f} nats < 0: the responses were probably not sampled "
            "from the policy whose log-probs were used (top-k/top-p filtering, a temperature "
            "missing from the log-probs, or dropout on in one pass only)",
            RuntimeWarning, stacklevel=2,
        )


def full_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Exact per-position KL(pi_theta || pi_ref) over the whole vocabulary, (B, R, V) -> (B, R).

    Summed along sampled responses this is an unbiased, never negative and usually
    lower-variance estimate of the sequence KL (each position's own sampling noise is
    averaged out; not guaranteed for the sum, as a later position's KL can covary with the
    tokens before it); used for evaluation and to test k1/k3 against.
    ``mask`` has the shape of the logits without their vocabulary dimension, (B, R).
    A token that pi_theta never picks (a logit of -inf: a masked vocabulary) adds 0
    (0 log 0 = 0); one that pi_ref never picks and pi_theta does makes the KL +inf.
    Computed in float32 (float64 if either input is float64).
    """
    temperature = require_temperature(temperature)
    require_same_shape(logits=logits, ref_logits=ref_logits)
    require_tensor("mask", mask)
    if tuple(mask.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the logits {tuple(logits.shape)} need "
                         f"{tuple(logits.shape[:-1])} (one entry per position)")
    require_binary("mask", mask)
    dtype = torch.float64 if torch.float64 in (logits.dtype, ref_logits.dtype) else torch.float32
    logp = torch.log_softmax(logits.to(dtype) / temperature, -1)
    ref_logp = torch.log_softmax(ref_logits.to(dtype) / temperature, -1)
    # where pi_theta's log-probability is -inf its term is 0, not 0 * (-inf) = NaN; everywhere
    # else the difference is taken as it is
    log_ratio = torch.where(logp == -math.inf, 0.0, logp - ref_logp)
    # where, not "* mask": a NaN or inf logit on padding times 0 would still be NaN
    return torch.where(mask.bool(), (logp.exp() * log_ratio).sum(-1), 0.0)


KL_PLACEMENTS = ("k1 in the reward", "k3 in the reward", "k1 in the loss", "k2 in the loss",
                 "k3 in the loss", "ratio * k3 in the loss", "exact KL in the loss")
"""Ways to put the KL penalty into a policy-gradient update (see :func:`expected_kl_gradients`)."""


def expected_kl_gradients(logits: torch.Tensor, ref_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the KL goes changes the gradient: the exact expected gradient of each placement.

    One token y ~ pi = softmax(logits), against pi_ref = softmax(ref_logits); logits and
    ref_logits are ``(V,)``. For each way of adding the KL penalty to the loss that PPO or
    GRPO minimises (:data:`KL_PLACEMENTS`) this returns E_y[gradient w.r.t. ``logits``],
    computed exactly by weighting every outcome with pi(y), next to the gradients of the
    two KLs themselves, ``"reverse KL"`` = grad KL(pi || pi_ref) (what RLHF penalises) and
    ``"forward KL"`` = grad KL(pi_ref || pi). All ``(V,)``. With log rho = log pi_ref(y) -
    log pi(y):

    - "k1 in the reward": -beta k1 joins the return, so the gradient is the score function
      k1(y) grad log pi(y) (this course, Ziegler et al., TRL's PPO) -> the reverse KL;
    - "k3 in the reward": k3(y) grad log pi(y) (TRL's PPO with ``kl_estimator="k3"``, and
      ``RLHFConfig(kl_estimator="k3")``): k3 = (rho - 1) + k1, and E[(rho - 1) grad log pi]
      = sum pi_ref grad log pi = -grad KL(pi_ref || pi), so -> the reverse KL *minus* the
      forward KL. Near pi_ref the two cancel to first order: the pull is second order in the
      distance, where the reverse KL's is first order;
    - "k1 in the loss": grad k1(y) = grad log pi(y), whose mean under pi is 0: no pull at all;
    - "k2 in the loss", k2 = (log rho)^2 / 2: grad = -log rho grad log pi -> the reverse KL;
    - "k3 in the loss", k3 = rho - 1 - log rho (GRPO, Shao et al. 2024): grad = (1 - rho)
      grad log pi, whose mean is -sum pi_ref grad log pi -> the *forward* KL (TRL #4967;
      OpenRLHF, verl and NeMo-RL fixed the same);
    - "ratio * k3 in the loss": k3 times pi(y) / pi_old(y), the ratio differentiated and
      equal to 1 on-policy (DeepSeek-V3.2's correction) -> the reverse KL;
    - "exact KL in the loss": the per-position KL summed over the vocabulary -> the reverse KL.

    Near pi = pi_ref the two KLs agree to second order, so their gradients agree to first
    order; they part as the policy moves away. Over a response, a per-token term in the loss
    also ignores that an earlier token changes the states that follow, which the return of
    "k1 in the reward" accounts for. So does the return of "k3 in the reward": given the
    prefix, a later token's k3 averages to that position's KL, so the earlier tokens feel
    the later positions' KL correctly; what is wrong is each token's pull on itself.
    """
    require_tensor("logits", logits), require_tensor("ref_logits", ref_logits)
    require_same_shape(logits=logits, ref_logits=ref_logits)
    if logits.dim() != 1 or logits.shape[0] < 2:
        raise ValueError(f"logits must have shape (V,) with V >= 2 outcomes, got {tuple(logits.shape)}")
    require_finite(logits=logits, ref_logits=ref_logits)
    grads = {name: expected_term_gradient(term, logits, ref_logits) for name, term in _LOSS_TERMS.items()}
    # the exact KL in the loss by autograd; the two KLs' gradients from their closed forms,
    # with respect to the logits: pi (log pi - log pi_ref - KL) and pi - pi_ref
    theta = logits.detach().double().requires_grad_(True)
    ref = ref_logits.detach().double()
    grads["exact KL in the loss"] = torch.autograd.grad(
        full_kl(theta, ref, torch.ones((), dtype=torch.float64)), theta)[0].to(logits.dtype)
    logp, ref_logp = torch.log_softmax(theta.detach(), -1), torch.log_softmax(ref, -1)
    p = logp.exp()
    grads["reverse KL"] = (p * (logp - ref_logp - (p * (logp - ref_logp)).sum())).to(logits.dtype)
    grads["forward KL"] = (p - ref_logp.exp()).to(logits.dtype)
    return {name: grads[name] for name in KL_PLACEMENTS + ("reverse KL", "forward KL")}


def kl_loss_term(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """A per-token KL term to *add to the loss* whose expected gradient is the right one:
    k2 = (log pi_theta(y) - log pi_ref(y))^2 / 2, for y drawn from pi_theta. Any shape, the
    same for both; returns that shape. (Its value estimates the KL only to second order; log
    :func:`kl_penalty`'s k1 or k3 for the value.)"""
    require_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    return 0.5 * (logprobs - ref_logprobs).pow(2)


def expected_term_gradient(term, logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """E_{y ~ pi}[grad w.r.t. ``logits`` of ``term(log pi(y), log pi_ref(y))``], exactly.

    ``logits`` and ``ref_logits`` are pi's and pi_ref's logits over the same ``(V,)`` outcomes;
    ``term(logprobs, ref_logprobs)`` maps the ``(V,)`` log-probabilities of every outcome to
    its ``(V,)`` per-outcome loss; the outcomes are weighted by pi(y), which is not
    differentiated (the token was drawn, not chosen by the gradient). Raises ValueError if
    the term has the wrong shape or does not depend on the log-probabilities at all.
    """
    require_tensor("logits", logits), require_tensor("ref_logits", ref_logits)
    require_same_shape(logits=logits, ref_logits=ref_logits)  # else pi_ref broadcasts to pi's outcomes
    theta = logits.detach().double().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    ref_logp = torch.log_softmax(ref_logits.detach().double(), -1)
    values = term(logp, ref_logp)
    if not isinstance(values, torch.Tensor) or values.shape != logp.shape:
        got = f"shape {tuple(values.shape)}" if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"the term must return one loss per outcome, shape {tuple(logp.shape)}; got {got}")
    surrogate = (logp.exp().detach() * values).sum()
    if not surrogate.requires_grad:
        raise ValueError("the term does not depend on the log-probabilities through autograd "
                         "(a .detach(), .item() or a new tensor cuts the gradient)")
    (grad,) = torch.autograd.grad(surrogate, theta, allow_unused=True)
    if grad is None:  # requires_grad set on a tensor cut from the graph (.detach().requires_grad_())
        raise ValueError("the term does not depend on the log-probabilities through autograd "
                         "(a .detach(), .item() or a new tensor cuts the gradient)")
    return grad.to(logits.dtype)


def _in_the_loss(estimator: str):
    """The course's own per-token estimate (:func:`kl_penalty`), used as a loss term."""
    return lambda lp, ref: kl_penalty(lp, ref, torch.ones_like(lp), estimator)


_LOSS_TERMS = {  # the loss of one drawn token y; see expected_kl_gradients
    # in the reward, k1 is a number in y's return: it weights grad log pi (the score function)
    "k1 in the reward": lambda lp, ref: _in_the_loss("k1")(lp, ref).detach() * lp,
    "k3 in the reward": lambda lp, ref: _in_the_loss("k3")(lp, ref).detach() * lp,
    "k1 in the loss": _in_the_loss("k1"),
    "k2 in the loss": kl_loss_term,
    "k3 in the loss": _in_the_loss("k3"),
    # pi / pi_old: equal to 1 on-policy, but differentiated
    "ratio * k3 in the loss": lambda lp, ref: (lp - lp.detach()).exp() * _in_the_loss("k3")(lp, ref),
}


def _require_finite_kl(current_kl: float) -> None:
    if not math.isfinite(current_kl):
        raise ValueError(f"the measured KL is {current_kl}: the KL controller will not update beta "
                         "from it (NaN/inf log-probs upstream)")


class FixedKLController:
    """beta stays at ``kl_coef``."""

    def __init__(self, kl_coef: float):
        if not (math.isfinite(kl_coef) and kl_coef >= 0):  # also refuses NaN and inf
            raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        _require_finite_kl(current_kl)


class AdaptiveKLController:
    """Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", eq. 2):

    e_t = clip(KL_t / target - 1, -0.2, 0.2),   beta_{t+1} = beta_t (1 + K_beta e_t),
    with K_beta = n_steps / horizon (n_steps: samples in the batch just seen; the paper writes
    a constant K_beta where its released code, and TRL after it, use n_steps / horizon,
    as this class does). beta grows
    while the measured KL is above ``target`` and shrinks while below; the clip bounds a
    single change to +-20% of the rate set by ``horizon``. A batch of 5 x ``horizon`` samples
    or more could scale beta by ``1 - 0.2 n_steps / horizon <= 0`` and flip the penalty's
    sign, so ``update`` refuses it.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        for name, value in (("init_kl_coef", init_kl_coef), ("target", target)):
            if not (math.isfinite(value) and value > 0):  # also refuses NaN and inf
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1 (samples), got {horizon!r}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        _require_finite_kl(current_kl)
        if not 0 <= n_steps < 5 * self.horizon:
            raise ValueError(f"n_steps={n_steps} samples in one update with horizon={self.horizon}: "
                             "need 0 <= n_steps < 5 * horizon, or a KL below target could scale beta "
                             "by 1 - 0.2 * n_steps / horizon <= 0 and turn the penalty into a bonus")
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
