"""The Bradley-Terry model of pairwise preferences, as a reward-model loss.

Bradley and Terry (1952): if every text y has a latent score r(y), the probability that a
person prefers y_w ("chosen") over y_l ("rejected") is

    P(y_w > y_l) = exp r(y_w) / (exp r(y_w) + exp r(y_l)) = sigmoid(r(y_w) - r(y_l)).

Fitting r by maximum likelihood on observed preferences minimises

    L(r) = -E_{(y_w, y_l)} [ log sigmoid(r(y_w) - r(y_l)) ],

the loss of InstructGPT's reward model (Ouyang et al. 2022, eq. 1). Only differences of r
matter, so a reward model is defined up to an additive constant.

Our human judgements are mean ratings, not comparisons; a pair (i, j) becomes a preference
"i over j" when rating_i - rating_j >= margin (ties and near-ties are dropped: the raters'
means are noisy, so a gap of less than about one scale point says little).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ppo_edu.lm.data import validate_ratings


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` over pairs; both of shape ``(P,)``.

    Computed as ``softplus(r_rejected - r_chosen)``, which equals it exactly and does not
    overflow for large score gaps (``log(sigmoid(x))`` is ``-inf`` for x < -104 in float32).
    """
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected "
                         f"{tuple(r_rejected.shape)} must have the same shape (P,)")
    if r_chosen.ndim != 1 or r_chosen.numel() == 0:
        raise ValueError(f"expected non-empty scores of shape (P,), got {tuple(r_chosen.shape)}")
    return F.softplus(r_rejected - r_chosen).mean()


def make_preference_pairs(
    ratings,
    margin: float = 1.0,
    max_pairs: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Pairs ``(chosen, rejected)`` of indices with ``ratings[chosen] - ratings[rejected] >= margin``.

    Returns an int64 array of shape ``(P, 2)``. With ``max_pairs`` a uniform random subset
    (seeded) of all qualifying pairs is returned, else all of them, in index order.
    Ratings must lie on the human scale [-4, 4].
    """
    r = validate_ratings(ratings)
    if margin <= 0:
        raise ValueError(f"margin must be > 0 (a pair needs a preferred side), got {margin}")
    n = len(r)
    if n < 2:
        raise ValueError(f"need at least two ratings to form a pair, got {n}")
    if max_pairs is None:
        chosen, rejected = np.nonzero(r[:, None] - r[None, :] >= margin)
        return np.stack([chosen, rejected], axis=1).astype(np.int64)
    # Rejection sampling: draw random (i, j), keep qualifying ones, de-duplicate.
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, int], None] = {}
    for _ in range(200):
        i = rng.integers(0, n, size=4 * max_pairs)
        j = rng.integers(0, n, size=4 * max_pairs)
        ok = r[i] - r[j] >= margin
        for a, b in zip(i[ok].tolist(), j[ok].tolist()):
            found.setdefault((a, b))
            if len(found) == max_pairs:
                return np.array(list(found), dtype=np.int64)
        if not ok.any() and not found:
            break
    if not found:
        raise ValueError(f"no pair of ratings differs by at least margin={margin}")
    return np.array(list(found), dtype=np.int64)


def pairwise_accuracy(scores, pairs) -> float:
    """Fraction of pairs ``(chosen, rejected)`` with ``scores[chosen] > scores[rejected]``.

    A tie counts as half right (a constant scorer gets 0.5, chance). ``scores`` has shape
    ``(N,)``, ``pairs`` shape ``(P, 2)`` of indices into it.
    """
    s = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, dtype=np.float64)
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise ValueError(f"pairs must have shape (P, 2) with P > 0, got {p.shape}")
    diff = s[p[:, 0]] - s[p[:, 1]]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
