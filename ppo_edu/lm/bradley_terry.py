"""The Bradley-Terry model of pairwise preferences, as a reward-model loss.

Bradley and Terry (1952): if every text y has a latent score r(y), the probability that a
person prefers y_w ("chosen") over y_l ("rejected") is

    P(y_w > y_l) = exp r(y_w) / (exp r(y_w) + exp r(y_l)) = sigmoid(r(y_w) - r(y_l)).

Fitting r by maximum likelihood on observed preferences minimises

    L(r) = -E_{(y_w, y_l)} [ log sigmoid(r(y_w) - r(y_l)) ],

the loss of InstructGPT's reward model (Ouyang et al. 2022, eq. 1). Only differences of r
matter, so a reward model is defined up to an additive constant.

Our human judgements are mean ratings, not comparisons; a pair (i, j) becomes a preference
"i over j" when rating_i - rating_j >= margin (ties and near-ties are dropped: with 15-29
raters the standard error of a difference of two mean ratings is about 0.3, so gaps below
about 0.5 are often noise; a margin of 1 keeps only near-certain orderings, at the cost of
fewer pairs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ppo_edu._checks import require_seed, require_tensor
from ppo_edu.lm.data import validate_ratings


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` over pairs; both of shape ``(P,)``.

    Computed as ``softplus(r_rejected - r_chosen)``, which equals it exactly and does not
    overflow for large score gaps (in float32, ``torch.log(torch.sigmoid(x))`` is ``-inf`` for
    x below about -88.7, where ``exp(-x)`` overflows). Both must be torch tensors (a reward
    model's outputs, with their gradients): numpy arrays or lists are a TypeError.
    """
    require_tensor("r_chosen", r_chosen)  # numpy failed with "... has no attribute 'numel'"
    require_tensor("r_rejected", r_rejected)
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected "
                         f"{tuple(r_rejected.shape)} must have the same shape (P,)")
    if r_chosen.ndim != 1 or r_chosen.numel() == 0:
        raise ValueError(f"expected non-empty scores of shape (P,), got {tuple(r_chosen.shape)}")
    for name, scores in (("r_chosen", r_chosen), ("r_rejected", r_rejected)):
        if not scores.is_floating_point():
            raise TypeError(f"{name} must hold floating-point scores (a reward model's outputs), "
                            f"got dtype {scores.dtype}")
        bad = ~torch.isfinite(scores.detach())
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"{name}[{i}] = {scores[i].item()} is not finite ({int(bad.sum())} non-finite "
                             "scores): the loss would be NaN or inf")
    return F.softplus(r_rejected - r_chosen).mean()


# rows of the (N, N) comparison at a time: for 10,605 ratings a chunk's float64 differences
# are 1024 x 10,605 x 8 bytes, ~87 MB, and the booleans compared from them ~11 MB more
_CHUNK = 1024


def _check_margin(margin) -> float:
    if isinstance(margin, (str, bytes, bool)):  # float("1.0") and float(True) would pass
        raise TypeError(f"margin must be a number, got {type(margin).__name__} {margin!r}")
    try:
        value = float(margin)
    except (TypeError, ValueError):
        raise TypeError(f"margin must be a number, got {type(margin).__name__}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"margin must be a finite number > 0 (a pair needs a preferred side), got {margin}")
    return value


def _qualifying(r: np.ndarray, margin: float, rows: slice) -> np.ndarray:
    return r[rows, None] - r[None, :] >= margin


def count_preference_pairs(ratings, margin: float = 1.0) -> int:
    """How many ordered pairs ``(i, j)`` have ``ratings[i] - ratings[j] >= margin`` (no pair list built)."""
    r = validate_ratings(ratings)
    margin = _check_margin(margin)
    return int(sum(_qualifying(r, margin, slice(s, s + _CHUNK)).sum() for s in range(0, len(r), _CHUNK)))


def _all_pairs(r: np.ndarray, margin: float) -> np.ndarray:
    out = []
    for s in range(0, len(r), _CHUNK):
        chosen, rejected = np.nonzero(_qualifying(r, margin, slice(s, s + _CHUNK)))
        out.append(np.stack([chosen + s, rejected], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)


def make_preference_pairs(
    ratings,
    margin: float = 1.0,
    max_pairs: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Pairs ``(chosen, rejected)`` of indices with ``ratings[chosen] - ratings[rejected] >= margin``.

    Returns an int64 array of shape ``(P, 2)`` with ``P >= 1``: all qualifying pairs in
    index order, or with ``max_pairs`` exactly ``max_pairs`` of them, a uniform random
    subset without repeats (seeded by ``seed``). The subset's order depends on its size:
    the order drawn when at most half of the qualifying pairs are asked for, index order
    otherwise. So shuffle before taking a prefix of it (``pairs[:k]`` of index order holds
    only low chosen indices).

    Raises TypeError for a ``margin`` that is not a number (a string, a bool), and
    ValueError when the input cannot give what was asked for: ratings off the human
    scale [-4, 4] (or NaN), fewer than two ratings, a ``margin`` that is not a finite number
    > 0 (with margin <= 0 a text would be "preferred" to itself or to its equal), no pair
    whose ratings differ by at least ``margin``, or ``max_pairs`` larger than the number of
    qualifying pairs (it never returns fewer pairs than asked for).
    """
    r = validate_ratings(ratings)
    margin = _check_margin(margin)
    n = len(r)
    if n < 2:
        raise ValueError(f"need at least two ratings to form a pair, got {n}")
    if max_pairs is None:
        pairs = _all_pairs(r, margin)
        if len(pairs) == 0:
            raise ValueError(f"no pair of ratings differs by at least margin={margin:g} "
                             f"(ratings span {r.min():g} .. {r.max():g})")
        return pairs
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer)) or max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive integer or None (all pairs), got {max_pairs!r}")
    total = count_preference_pairs(r, margin)
    if total == 0:
        raise ValueError(f"no pair of ratings differs by at least margin={margin:g} "
                         f"(ratings span {r.min():g} .. {r.max():g})")
    if max_pairs > total:
        raise ValueError(f"max_pairs={max_pairs} but only {total} pairs of these ratings differ by at least "
                         f"margin={margin:g}; ask for at most {total}, or max_pairs=None for all of them")
    rng = np.random.default_rng(require_seed("seed", seed))
    if 2 * max_pairs <= total:
        # Rejection sampling, without building all pairs: draw random (i, j), keep qualifying
        # ones, de-duplicate. At least half of the qualifying pairs are left to find at every draw.
        found: dict[tuple[int, int], None] = {}
        for _ in range(200):
            i = rng.integers(0, n, size=4 * max_pairs)
            j = rng.integers(0, n, size=4 * max_pairs)
            ok = r[i] - r[j] >= margin
            for a, b in zip(i[ok].tolist(), j[ok].tolist()):
                found.setdefault((a, b))
                if len(found) == max_pairs:
                    return np.array(list(found), dtype=np.int64)
    # Most of the qualifying pairs are wanted, or they are too rare to hit at random: list them all.
    pairs = _all_pairs(r, margin)
    return pairs[np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))]


def score_array(scores, name: str = "scores") -> np.ndarray:
    """``scores`` (a tensor, array or list of numbers) as float64 numpy. Strings and booleans
    are a TypeError, not converted (``["3", "2"]`` or ``[True, False]`` are not scores)."""
    if isinstance(scores, torch.Tensor):
        if scores.dtype == torch.bool or scores.is_complex():
            raise TypeError(f"{name} must be numbers, got dtype {scores.dtype}")
        return scores.detach().cpu().double().numpy()  # .double() first: numpy has no bfloat16
    raw = np.asarray(scores)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers, got dtype {raw.dtype}")
    return raw.astype(np.float64)


def pairwise_accuracy(scores, pairs) -> float:
    """Fraction of pairs ``(chosen, rejected)`` with ``scores[chosen] > scores[rejected]``.

    A tie counts as half right (a constant scorer gets 0.5, chance). ``scores`` has shape
    ``(N,)`` and must be finite (a NaN compares false both ways and would silently count
    as wrong); ``pairs`` has shape ``(P, 2)``, P >= 1, of integer indices in ``[0, N)``
    (a negative index is an error, not Python's count from the end), each pair of two
    different texts.
    """
    s = score_array(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional (one score per text), got shape {s.shape}")
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scores[{i}] = {s[i]} is not finite ({int(bad.sum())} non-finite scores): "
                         "a NaN would silently count as a wrong answer")
    p = pairs.detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise ValueError(f"pairs must have shape (P, 2) with P > 0, got {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs must hold integer indices into scores, got dtype {p.dtype}")
    out_of_range = (p < 0) | (p >= len(s))
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range.any(axis=1))[0])
        raise ValueError(f"pairs[{row}] = {p[row].tolist()} is not a pair of indices in [0, {len(s)}) "
                         f"(scores has {len(s)} entries)")
    same = p[:, 0] == p[:, 1]
    if same.any():  # it would count as a tie: half right whatever the scores
        row = int(np.flatnonzero(same)[0])
        raise ValueError(f"pairs[{row}] = {p[row].tolist()} compares a text with itself")
    diff = s[p[:, 0]] - s[p[:, 1]]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
