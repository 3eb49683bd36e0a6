"""The KL penalty that keeps the policy near the reference model, and its controller.

RLHF maximises  E[score(x, y)] - beta KL(pi_theta(.|x) || pi_ref(.|x)).  The sequence KL
is a sum over response tokens, and with y sampled from pi_theta each token gets a
per-token estimate (J. Schulman, "Approximating KL divergence", 2020), with
log r_t = log pi_ref(y_t|...) - log pi_theta(y_t|...):

- k1 = -log r_t = log pi_theta - log pi_ref. Unbiased; a single token (or a short sample)
  can be negative, the mean over many samples cannot.
- k3 = (r_t - 1) - log r_t. Unbiased too, and never negative, at the price of more
  variance where pi_theta and pi_ref differ a lot.

The penalty subtracts beta * kl_t from each token's reward, and the KL this course
*reports* is the very tensor the penalty used (summed per sample, averaged over the
batch), not a second estimate computed elsewhere: TRL #1161 reported one and penalised
another. A clearly negative mean of k1 is not "the policy got closer than identical":
it means the tokens were not sampled from pi_theta (top-k/top-p, a temperature missing
from the log-probs, dropout on in one pass only), and :func:`kl_penalty` warns about it
(TRL #351).
"""

from __future__ import annotations

import warnings

import torch

from ppo_edu._checks import require_same_shape

ESTIMATORS = ("k1", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate between pi_theta and pi_ref on sampled tokens, 0 on padding.

    logprobs, ref_logprobs, mask: ``(B, R)``. Returns ``(B, R)``; its row sums are the
    per-sample KL estimates.
    """
    require_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask)
    log_ratio = (ref_logprobs - logprobs) * mask  # log r_t, 0 on padding
    if estimator == "k1":
        kl = -log_ratio
    elif estimator == "k3":
        kl = torch.expm1(log_ratio) - log_ratio
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; use one of {ESTIMATORS}")
    return kl * mask


def sequence_kl(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample KL: the per-token estimates summed over each response, shape (B,)."""
    return (kl * mask).sum(1)


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

    Summed along sampled responses this is an unbiased, never negative and lower-variance
    estimate of the sequence KL; used for evaluation and to test k1/k3 against.
    """
    logp = torch.log_softmax(logits.float() / temperature, -1)
    ref_logp = torch.log_softmax(ref_logits.float() / temperature, -1)
    return (logp.exp() * (logp - ref_logp)).sum(-1) * mask


class FixedKLController:
    """beta stays at ``kl_coef``."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", eq. 2):

    e_t = clip(KL_t / target - 1, -0.2, 0.2),   beta_{t+1} = beta_t (1 + K_beta e_t),
    with K_beta = n_steps / horizon (n_steps: samples in the batch just seen). beta grows
    while the measured KL is above ``target`` and shrinks while below; the clip bounds a
    single change to +-20% of the rate set by ``horizon``.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if init_kl_coef <= 0 or target <= 0 or horizon <= 0:
            raise ValueError(
                f"need init_kl_coef > 0, target > 0, horizon > 0; got {init_kl_coef}, {target}, {horizon}"
            )
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
