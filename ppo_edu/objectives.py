"""PPO's objectives, as in Schulman et al. 2017, "Proximal Policy Optimization Algorithms".

Notation follows the course: pi_theta is the policy being optimised, pi_theta_old the
policy that collected the data, r_t(theta) = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t)
the probability ratio, A_hat_t the advantage estimate, epsilon the clip range.

All objectives are written to be *maximised* (as in the paper); a training loop minimises
their negation. Shapes: any shape works, e.g. ``(T, N)`` for time x envs or ``(B, L)``
for batch x tokens, as long as every argument has the same one. An optional ``mask`` of
that shape (1 = real sample, 0 = padding) turns the mean into a masked mean.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ppo_edu._checks import (
    require_binary,
    require_finite,
    require_positive,
    require_same_shape,
    require_tensor,
)


class ClippedSurrogate(NamedTuple):
    """L^CLIP and the clip fraction: the share of samples whose ratio is outside [1 - eps, 1 + eps].

    That is what PPO implementations log. Only the samples outside on the side their
    advantage pushes (A > 0 and r > 1 + eps, A < 0 and r < 1 - eps) get no gradient; the
    others keep their unclipped term (the min picks it).
    """

    objective: torch.Tensor
    clip_fraction: torch.Tensor


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1 (all entries if mask is None)."""
    if mask is None:
        return values.mean()
    require_same_shape(values=values, mask=mask)
    require_binary("mask", mask)  # not weights: a 0.25 would count as a whole entry
    mask = mask.bool()
    count = mask.sum()
    if count == 0:
        raise ValueError("mask selects no entries: the masked mean is undefined")
    # where(), not values * mask: an inf or NaN in padding times 0 would still be NaN
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count


def zero_padding(mask: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors with their padding entries (``mask`` 0) set to 0; unchanged if mask is None.

    Masking only the mean is not enough for the backward pass: an inf in padding (a -inf
    old log-prob, say) makes exp(...) or (V - R)^2 infinite there, and the mean's zero
    gradient times that infinite derivative is NaN, which would reach the weights. Zeroing
    the inputs first keeps every padding entry's derivative finite, and its gradient 0.
    """
    if mask is None:
        return tensors
    # a mask of another shape would broadcast: a (3, 1) mask and a (3,) tensor give (3, 3)
    require_same_shape(mask=mask, **{f"tensors[{i}]": t for i, t in enumerate(tensors)})
    keep = mask.bool()
    return tuple(torch.where(keep, t, torch.zeros_like(t)) for t in tensors)


def _validate(logprobs, old_logprobs, advantages=None, mask=None, averaged: bool = True) -> None:
    named = {"logprobs": logprobs, "old_logprobs": old_logprobs}
    if advantages is not None:
        named["advantages"] = advantages
    if mask is not None:
        named["mask"] = mask
    for name, value in named.items():
        require_tensor(name, value)
    require_same_shape(**named)
    if averaged and logprobs.numel() == 0:  # the mean of nothing is NaN
        raise ValueError("logprobs is empty: there are no samples to average over")
    finite = {k: v for k, v in named.items() if k != "mask"}
    if mask is not None:
        # padding may hold anything; only the real entries must be finite
        finite = {k: torch.where(mask.bool(), v, torch.zeros_like(v)) for k, v in finite.items()}
    require_finite(**finite)


def _require_weights(weights, like: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Weights for a weighted sum over samples: a tensor of ``like``'s shape, finite, >= 0,
    and 0 wherever ``mask`` is 0 (a weight on padding would train on it)."""
    require_tensor("weights", weights)
    require_same_shape(weights=weights, logprobs=like)
    require_finite(weights=weights)
    if (weights < 0).any():
        raise ValueError(f"weights must be >= 0, got {weights.min().item()}")
    on_padding = (weights != 0) & ~mask.bool() if mask is not None else None
    if on_padding is not None and on_padding.any():
        index = tuple(int(i) for i in on_padding.nonzero()[0])
        raise ValueError(f"weights must be 0 on padding (mask 0); index {index} has {weights[index].item()}")


def probability_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor) -> torch.Tensor:
    """r_t(theta) = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t), computed from log-probabilities.

    ``exp(logprobs - old_logprobs)`` rather than a quotient of probabilities: tiny
    probabilities underflow, their logs do not. ``old_logprobs`` carries no gradient.
    """
    _validate(logprobs, old_logprobs, averaged=False)
    return torch.exp(logprobs - old_logprobs.detach())


def cpi_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    check: bool = True,
) -> torch.Tensor:
    """L^CPI(theta) = E_t[r_t(theta) A_hat_t] (PPO paper, eq. 6). Maximise it.

    At theta = theta_old its gradient is the policy gradient E_t[grad log pi_theta A_hat_t],
    because grad r_t = r_t grad log pi_theta and r_t(theta_old) = 1.
    ``check=False`` skips the shape and NaN checks (see :func:`clipped_surrogate`).
    """
    if check:
        _validate(logprobs, old_logprobs, advantages, mask)
    log_ratio, advantages = zero_padding(mask, logprobs - old_logprobs.detach(), advantages.detach())
    return masked_mean(torch.exp(log_ratio) * advantages, mask)


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    epsilon: float = 0.2,
    mask: torch.Tensor | None = None,
    *,
    check: bool = True,
    weights: torch.Tensor | None = None,
) -> ClippedSurrogate:
    """L^CLIP(theta) = E_t[min(r_t A_hat_t, clip(r_t, 1 - eps, 1 + eps) A_hat_t)] (eq. 7).

    The min makes the objective a pessimistic bound: once r_t has moved past 1 + eps
    (A > 0) or below 1 - eps (A < 0), the clipped term is the smaller one and is
    constant in theta, so that sample stops pushing. Moves that make the objective
    *worse* are never clipped away.

    Returns the objective (to maximise) and the clip fraction: the share of samples
    where |r_t - 1| > eps, the usual diagnostic.

    The inputs are checked (same shapes, finite) on every call. ``check=False`` skips
    that, for a training loop's inner step that checks its loss once per update instead:
    the checks cost about as much as the arithmetic for a 256-sample minibatch.

    ``weights`` (optional, the shape of ``logprobs``): E_t becomes the weighted sum
    sum_t w_t * term_t instead of the mean over the mask, for weights that are >= 0, finite
    and 0 on padding (they need not add up to 1). Lesson 6 uses it to weigh tokens by their
    response (``ppo_edu.rlhf.losses.token_weights``). The clip fraction stays the share of
    all the real samples.
    """
    require_positive("epsilon", epsilon)
    if check:
        _validate(logprobs, old_logprobs, advantages, mask)
    if weights is not None:
        _require_weights(weights, logprobs, mask)
    log_ratio, advantages = zero_padding(mask, logprobs - old_logprobs.detach(), advantages.detach())
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages
    terms = torch.minimum(unclipped, clipped)
    objective = masked_mean(terms, mask) if weights is None else (weights * terms).sum()
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1.0).abs() > epsilon).to(ratio.dtype), mask)
    return ClippedSurrogate(objective, clip_fraction)


def approx_kl(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor | None = None,
    *, check: bool = True,
) -> torch.Tensor:
    """Estimate KL(pi_old || pi) from samples a ~ pi_old with the k3 estimator.

    k3 = (r - 1) - log r with r = pi/pi_old: unbiased and never negative
    (J. Schulman, "Approximating KL divergence", 2020). The diagnostic PPO reports.
    """
    if check:
        _validate(logprobs, old_logprobs, mask=mask)
    (log_ratio,) = zero_padding(mask, logprobs - old_logprobs)
    return masked_mean(torch.expm1(log_ratio) - log_ratio, mask)


def categorical_kl(old_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi_old || pi) per state for categorical policies; logits of shape (..., A)."""
    require_tensor("old_logits", old_logits)
    require_tensor("logits", logits)
    require_same_shape(old_logits=old_logits, logits=logits)
    for name, value in (("old_logits", old_logits), ("logits", logits)):
        if not value.is_floating_point():  # log_softmax has no integer kernel
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if bool(torch.isnan(value).any()):
            index = tuple(int(i) for i in torch.isnan(value).nonzero()[0])
            raise ValueError(f"{name} contains NaN (first at index {index})")
    old_logp = torch.log_softmax(old_logits, dim=-1)
    logp = torch.log_softmax(logits, dim=-1)
    old_p = old_logp.exp()
    # an action pi_old never takes (logit -inf, a masked action) adds 0 (0 log 0 = 0): written as
    # old_p * (old_logp - logp) it was 0 * (-inf) = NaN, for the whole state
    diff = torch.where(old_p > 0, old_logp - logp, torch.zeros_like(old_logp))
    return (old_p * diff).sum(-1)
