"""Best-of-n: how much reward a KL budget can buy with no training at all.

The best-of-n policy samples ``n`` responses from the reference and returns the one the
reward model scores highest. Its KL to the reference is at most

    log n - (n - 1) / n  nats

(equal when ties have probability zero; duplicates and ties only lower it; Beirami et al.
2024, "Theoretical guarantees on the best-of-n alignment policy"). It never writes anything
the reference would not, and it needs no training, which makes it a yardstick for a trained
policy: WebGPT (Nakano et al. 2021) and Gao et al. (2022) set RL against it, and Gao et al.
found that, measured in KL, RL optimises the reward model more slowly than best-of-n.

Estimating it does not need a fresh set of ``n`` samples per ``n``. From ``N >= n``
samples of one prompt sorted by score, the ``j``-th smallest (1-based) is the highest of a
random ``n``-subset with probability ``C(j-1, n-1) / C(N, n)``; weighting any statistic of
the sorted samples (score, judge) by these probabilities averages it over all ``n``-subsets:
an unbiased estimate of its mean under best-of-n, for every ``n <= N`` at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ppo_edu._checks import require_bool, require_count, require_seed, text_list
from ppo_edu.rlhf.generation import (
    context_length_of,
    encode_prompts,
    generate,
    require_one_vocabulary,
    require_pad_token,
)


def best_of_n_kl(n: int) -> float:
    """Upper bound on KL(best-of-n || reference), nats: ``log n - (n - 1) / n``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


def best_of_n_weights(num_samples: int, n: int) -> np.ndarray:
    """``(num_samples,)`` probabilities that the j-th smallest of ``num_samples`` scores is
    the highest of a random ``n``-subset (zero for ``j < n``; they sum to 1)."""
    best_of_n_kl(n)  # validates n
    if n > num_samples:
        raise ValueError(f"best-of-{n} needs at least {n} samples per prompt, got {num_samples}")
    j = np.arange(1, num_samples + 1)
    log_w = np.full(num_samples, -np.inf)
    ok = j >= n
    lg = np.vectorize(math.lgamma)
    log_w[ok] = (lg(j[ok]) - lg(n) - lg(j[ok] - n + 1)  # log C(j-1, n-1)
                 - (math.lgamma(num_samples + 1) - math.lgamma(n + 1) - math.lgamma(num_samples - n + 1)))
    w = np.exp(log_w)
    return w / w.sum()


def best_of_n_curve(scores, judge=None, ns: Sequence[int] | None = None) -> list[dict]:
    """Best-of-n's expected score (and judge) for each ``n`` in ``ns``.

    ``scores`` (and ``judge``, the same shape) are ``(N, P)``: ``N`` reference samples for
    each of ``P`` prompts, scored by the reward model (and the judge). Returns one row per
    ``n``: ``n``, ``kl_bound`` (nats), ``score`` and ``judge`` (means over prompts; ``nan``
    without a judge). ``ns`` defaults to the powers of two up to ``N``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must have shape (samples per prompt, prompts), got {scores.shape}")
    if judge is not None:
        judge = np.asarray(judge, dtype=np.float64)
        if judge.shape != scores.shape:
            raise ValueError(f"judge has shape {judge.shape}, scores {scores.shape}: they must match")
    for name, x in (("scores", scores), ("judge", judge)):
        if x is not None and not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
    N = scores.shape[0]
    if ns is None:
        ns = [2 ** k for k in range(int(math.log2(N)) + 1)]
    order = np.argsort(scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, 0)
    sorted_judge = np.take_along_axis(judge, order, 0) if judge is not None else None
    rows = []
    for n in ns:
        w = best_of_n_weights(N, n)[:, None]
        rows.append({
            "n": int(n), "kl_bound": best_of_n_kl(n),
            "score": float((w * sorted_scores).sum(0).mean()),
            "judge": float((w * sorted_judge).sum(0).mean()) if judge is not None else float("nan"),
        })
    return rows


@torch.no_grad()
def sample_and_score(lm, tokenizer, prompts: Sequence[str], reward_fn: Callable[[list[str]], object],
                     judge_fn: Callable[[list[str]], object] | None = None, num_samples: int = 16,
                     max_new_tokens: int = 20, temperature: float = 1.0, seed: int = 0,
                     batch_size: int = 256, add_bos: bool = True,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``num_samples`` responses per prompt from ``lm``, scored by the reward model
    and the judge on prompt + response, as for training. Returns ``(N, P)`` arrays
    (the judge's None without ``judge_fn``).

    ``max_new_tokens``, ``temperature`` and ``add_bos`` (a BOS before each prompt, see
    ``encode_prompts``) as in training; ``seed`` seeds the sampling; ``batch_size`` prompts
    are generated at a time; ``progress`` shows a bar over the samples drawn. ``prompts`` is a
    list (or any iterable) of strings; ``lm`` a causal LM over the tokenizer's vocabulary.
    """
    from ppo_edu.rlhf.trainer import check_scores

    # a list, tuple, numpy array, generator...; a single str: each character a prompt of its own
    prompts = text_list("prompts", prompts)
    if not prompts:
        raise ValueError("prompts is empty")
    num_samples = require_count("num_samples", num_samples)
    batch_size = require_count("batch_size", batch_size)
    require_bool("add_bos", add_bos)
    pad_id = require_pad_token(tokenizer)
    context_length_of(lm)  # a PolicyWithValueHead or a reward model: a clear TypeError
    require_one_vocabulary(lm, None, tokenizer)  # else "index out of range" inside the model
    device = next(lm.parameters()).device
    generator = torch.Generator(device=device).manual_seed(require_seed("seed", seed))
    was_training = lm.training
    lm.eval()
    scores = np.zeros((num_samples, len(prompts)), np.float32)
    judged = np.zeros_like(scores) if judge_fn is not None else None
    bar = tqdm(total=num_samples * len(prompts), desc="best-of-n samples", disable=not progress)
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            q, qm = encode_prompts(tokenizer, chunk, context_length_of(lm), max_new_tokens, device, add_bos)
            for i in range(num_samples):
                gen = generate(lm, q, qm, max_new_tokens, tokenizer.eos_token_id, pad_id, temperature,
                               generator)
                decoded = tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True)
                texts = [p + r for p, r in zip(chunk, decoded)]
                cols = slice(start, start + len(chunk))
                scores[i, cols] = check_scores(reward_fn(texts), len(texts), texts).cpu().numpy()
                if judge_fn is not None:
                    judged[i, cols] = check_scores(judge_fn(texts), len(texts), texts, "judge_fn").cpu().numpy()
                bar.update(len(chunk))
    finally:
        bar.close()
        lm.train(was_training)
    return scores, judged
