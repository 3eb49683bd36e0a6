"""The two PPO losses over response tokens. The policy loss is lesson 2's L^CLIP
(:func:`ppo_edu.objectives.clipped_surrogate` with a token mask); the value loss is here."""

from __future__ import annotations


import torch

from ppo_edu._checks import require_positive, require_same_shape
from ppo_edu.objectives import masked_mean, zero_padding


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip_range: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 E_t[max((V - R)^2, (V_clip - R)^2)] over real tokens, with
    V_clip = V_old + clip(V - V_old, -clip_range, clip_range) (PPO2 / Ziegler et al.).

    Like L^CLIP it is pessimistic: the larger of the two errors, so once V has moved more
    than ``clip_range`` from the value at sampling time *towards* the return, moving it
    further earns nothing (no gradient); a V that has moved away from the return keeps its
    gradient back. Returns the loss (to minimise) and the fraction of tokens where the clipped
    error was the larger.
    values, old_values, returns, mask: ``(B, R)``.
    """
    require_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    # clamp(x, 0.2, -0.2) is -0.2 everywhere: a negative clip range gives a wrong loss, no error
    require_positive("clip_range", clip_range)  # inf: no clipping
    # padding zeroed first: an inf there would turn the backward pass's zero into NaN
    values, old_values, returns = zero_padding(mask, values, old_values.detach(), returns.detach())
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_error > unclipped_error).to(values.dtype), mask)
    return loss, clip_fraction
