"""The two PPO losses over response tokens. The policy loss is lesson 2's L^CLIP
(:func:`ppo_edu.objectives.clipped_surrogate` with a token mask, and the token weights
below); the value loss is here."""

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


LOSS_AGGREGATIONS = ("token-mean", "response-mean", "constant")


def token_weights(mask: torch.Tensor, aggregation: str, max_new_tokens: int | None = None) -> torch.Tensor:
    """How much each response token counts in a minibatch's policy loss, ``(B, R)``, 0 on padding.

    - ``"token-mean"``: 1 / (the minibatch's real tokens), every token alike. This is E_t of
      lesson 4, with tokens as time steps, and what TRL's PPO does.
    - ``"response-mean"``: 1 / (B * the response's length): each response's mean, then the
      mean over responses, as GRPO's objective is written (Shao et al. 2024). A token of a
      5-token response weighs four times one of a 20-token response (the length bias of Liu
      et al. 2025, "Understanding R1-Zero-like training").
    - ``"constant"``: 1 / (B * ``max_new_tokens``), the same for every token of every
      minibatch (Liu et al.'s Dr. GRPO): the sum over tokens, scaled by a constant.
    """
    if aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {LOSS_AGGREGATIONS}, got {aggregation!r}")
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, R), got shape {tuple(mask.shape)}")
    real = mask.bool()
    lengths = real.sum(1, keepdim=True)
    if (lengths == 0).any():
        raise ValueError(f"response {int((lengths[:, 0] == 0).nonzero()[0])} has no real token: a "
                         "response holds at least the token it stopped on")
    batch = mask.shape[0]
    if aggregation == "token-mean":
        scale = 1.0 / real.sum()
    elif aggregation == "response-mean":
        scale = 1.0 / (batch * lengths)
    else:
        if max_new_tokens is None or lengths.max() > max_new_tokens:
            raise ValueError(f"'constant' divides by max_new_tokens, which must be at least the longest "
                             f"response ({int(lengths.max())} tokens), got {max_new_tokens}")
        scale = torch.tensor(1.0 / (batch * max_new_tokens))
    return torch.where(real, scale.to(torch.float32), 0.0)
