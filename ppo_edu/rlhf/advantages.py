"""Rewards, advantages and returns over response tokens, shapes ``(B, R)`` with a mask.

Each response is one episode whose steps are its tokens. Token t's reward is the KL
penalty -beta kl_t; the last real token also gets the reward model's score (the
episode's only "environment" reward, given when the response is complete). The episode
*terminates* after that token, so nothing is bootstrapped after it (V = 0), and padding
carries no reward, no value and no advantage. gamma = 1 is the usual choice: the score
at the end is what every token works for.

This is lesson 3's GAE with one episode per row: ``token_gae`` equals
``ppo_edu.advantages.compute_gae`` on the transposed ``(R, B)`` tensors with
``terminated`` set at each row's last real token (tested).
"""

from __future__ import annotations

import math
import numbers

import torch

from ppo_edu._checks import require_binary, require_finite, require_same_shape, require_tensor


def _require_prefix_mask(mask: torch.Tensor) -> None:
    # 0/1 only: the mask is read as .bool() in some places and multiplied or summed in others,
    # so a 2 would put the score on padding and a 0.5 would half count a token
    require_binary("mask", mask)
    if mask.dim() != 2:
        raise ValueError(f"mask must have shape (B, R), got {tuple(mask.shape)}")
    if (mask[:, 1:] > mask[:, :-1]).any():
        raise ValueError("mask must be 1s then 0s in every row (a response is a contiguous prefix)")
    if (mask.sum(1) == 0).any():
        raise ValueError("a row of the mask has no real token: every response has at least one")


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries; 0 on padding.

    ``shift_mean=False`` only scales: values / std, what the reward whitening before GAE
    needs. Multiplying every token's reward by one positive number leaves the best policy
    as it was. TRL's ``masked_whiten(shift_mean=False)`` instead adds the unscaled mean back,
    (values - mean) / std + mean: that is values / std plus mean (1 - 1/std) on *every*
    token, so a response's return moves with its length: a length bias with the sign of the
    mean when std > 1 and the opposite sign when std < 1, the usual case for per-token rewards
    (mostly small KL terms and one score per response).
    """
    require_same_shape(values=values, mask=mask)
    require_binary("mask", mask)
    real = mask.bool()  # where, not "* mask": padding may hold anything, even NaN
    n = real.sum().to(values.dtype)
    if n < 2:
        raise ValueError("whitening needs at least two real entries")
    mean = torch.where(real, values, 0.0).sum() / n
    centred = torch.where(real, values - mean, 0.0)
    var = (centred ** 2).sum() / (n - 1)
    scale = torch.rsqrt(var + eps)
    out = centred * scale if shift_mean else values * scale
    return torch.where(real, out, 0.0)


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float,
                  mask: torch.Tensor) -> torch.Tensor:
    """r_t = -beta kl_t on every real token, plus the score on each row's last real token. (B, R).

    ``scores`` (B,), one per response; ``kl`` and ``mask`` (B, R).

    ``kl_coef`` (beta) is a finite number >= 0: a negative one would turn the KL penalty into a
    bonus for leaving the reference. Padding gets 0 whatever ``kl`` holds there."""
    if isinstance(kl_coef, torch.Tensor) and kl_coef.numel() == 1:
        kl_coef = kl_coef.item()
    if (isinstance(kl_coef, bool) or not isinstance(kl_coef, numbers.Real)
            or not (math.isfinite(kl_coef) and kl_coef >= 0)):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
    require_tensor("scores", scores)
    require_same_shape(kl=kl, mask=mask)
    if scores.shape != (kl.shape[0],):
        raise ValueError(f"scores must have shape (B,) = ({kl.shape[0]},), got {tuple(scores.shape)}")
    require_finite(scores=scores)
    _require_prefix_mask(mask)
    # where, not "* mask": an inf or NaN KL on padding times 0 would still be NaN
    rewards = torch.where(mask.bool(), -kl_coef * kl, 0.0)
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
              gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over response tokens (Schulman et al. 2016, eq. 16); returns (advantages, returns).

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V(s_{t+1}) = 0 after the last real
    token; A_t = delta_t + gamma lambda A_{t+1}; returns = A + V (the critic's target).
    Everything is 0 on padding. rewards, values, mask: ``(B, R)``. The outputs are in the
    floating-point type of rewards and values together (``torch.promote_types``), or torch's
    default float type when both are integer or boolean: integer buffers would round every
    advantage towards 0.
    """
    require_same_shape(rewards=rewards, values=values, mask=mask)
    _require_prefix_mask(mask)
    for name, value in (("gamma", gamma), ("lam", lam)):
        # True passed as 1.0 and "1.0" failed a comparison naming neither
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a real number, got {value!r}")
    if not (0.0 < gamma <= 1.0) or not (0.0 <= lam <= 1.0):
        raise ValueError(f"need 0 < gamma <= 1 and 0 <= lam <= 1, got {gamma}, {lam}")
    for name, value in (("rewards", rewards), ("values", values)):
        if value.is_complex():
            raise TypeError(f"{name} must be a real tensor, got {value.dtype}")
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    if not dtype.is_floating_point:  # e.g. torch.zeros_like(mask) as the values: all-zero advantages
        dtype = torch.get_default_dtype()
    rewards, values = rewards.to(dtype), values.to(dtype)  # no copy when already of that type
    m = mask.to(values.dtype)
    real = mask.bool()
    # padding may hold anything (even NaN): replace it, rather than multiply it, by 0
    rewards = torch.where(real, rewards, torch.zeros_like(rewards))
    values = torch.where(real, values, torch.zeros_like(values))
    require_finite(rewards=rewards, values=values)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)  # 0 after the end
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        running = (deltas[:, t] + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m
