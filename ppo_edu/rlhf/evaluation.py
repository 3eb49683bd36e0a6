"""Measuring a policy on fixed prompts: reward-model score, held-out judge, KL, fluency.

The same prompts and the same sampling seed give comparable samples *before* and
*after* training. The KL here is the exact per-token KL over the vocabulary, summed
along each sampled response (unbiased for the sequence KL and never negative), so it
also serves to compare trainers whose own KL estimates differ.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ppo_edu._checks import require_bool, require_count, require_seed, require_text_list, text_list
from ppo_edu.rlhf.generation import (
    context_length_of,
    encode_prompts,
    generate,
    require_one_vocabulary,
    require_pad_token,
    require_reference_on,
)
from ppo_edu.rlhf.kl import full_kl
from ppo_edu.rlhf.logprobs import lm_forward, logprobs_from_logits


@dataclass
class PolicyEval:
    """Means over the evaluation samples (and the samples themselves)."""

    score: float  # reward model
    score_std: float  # population std (ddof 0) of the scores; the trainer's per-batch one is ddof 1
    judge: float  # held-out judge (nan if none)
    kl: float  # per-sample KL(pi || pi_ref), nats
    # negative log-likelihood per token under pi_ref, averaged within each response and then over
    # responses, so each response counts once whatever its length (fluency: lower is better)
    ref_nll: float
    distinct2: float  # distinct bigrams / all bigrams of the responses (diversity)
    response_length: float
    texts: list[str] = field(repr=False)
    responses: list[str] = field(repr=False)
    scores: np.ndarray = field(repr=False)  # one per prompt, in the prompts' order
    kls: np.ndarray = field(repr=False)  # each sample's KL, nats (their mean is ``kl``)

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in
                ("score", "score_std", "judge", "kl", "ref_nll", "distinct2", "response_length")}


def opening_prompts(texts: Sequence[str], min_words: int = 2, max_words: int = 4,
                    seed: int = 0) -> list[str]:
    """The first ``min_words`` to ``max_words`` words (2-4 by default; the count drawn per
    text from a generator seeded with ``seed``) of each text: held-out snippet openings
    offline, IMDB review openings on Colab. HTML line breaks are removed.

    An opening always leaves at least one word to continue, so a text of ``min_words``
    words or fewer gives no prompt and is skipped: the result can be shorter than
    ``texts`` and does not line up with it. ``texts`` is a list (or any iterable) of
    strings; ``min_words`` and ``max_words`` are whole numbers of words.
    """
    texts = text_list("texts", texts)  # a single str: its characters were the texts
    for name, value in (("min_words", min_words), ("max_words", max_words)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # 2.5 ran as 2 or 3
            raise ValueError(f"{name} must be an integer number of words, got {value!r}")
    if min_words < 1 or max_words < min_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = np.random.default_rng(require_seed("seed", seed))
    prompts = []
    for text in texts:
        words = text.replace("<br />", " ").split()
        if len(words) <= min_words:
            continue  # nothing left to continue
        n = int(rng.integers(min_words, max_words + 1))
        prompts.append(" ".join(words[:min(n, len(words) - 1)]))
    if not prompts:
        raise ValueError("no text is long enough to cut an opening from")
    return prompts


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Share of distinct word n-grams among all n-grams of ``texts`` (1 = no repetition)."""
    require_text_list("texts", texts)  # else its characters would be the texts: no n-gram, NaN
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


@torch.no_grad()
def evaluate_policy(lm, reference, tokenizer, prompts: Sequence[str],
                    reward_fn: Callable[[list[str]], torch.Tensor],
                    judge_fn: Callable[[list[str]], object] | None = None,
                    max_new_tokens: int = 20, temperature: float = 1.0, seed: int = 0,
                    batch_size: int = 64, add_bos: bool = True) -> PolicyEval:
    """Sample one response per prompt from ``lm`` and measure it: a :class:`PolicyEval`.

    ``reward_fn`` (and ``judge_fn``, the held-out judge, optional) take the prompt + response
    texts and return one score per text. ``reference`` is pi_ref: the KL is the exact
    KL(pi || pi_ref) over the vocabulary, summed along each response, and the fluency is
    the reference's negative log-likelihood per token (both models run in eval mode, dropout
    off; their train/eval modes are restored afterwards). ``max_new_tokens``, ``temperature``
    and ``add_bos`` (a BOS before each prompt, see ``encode_prompts``) as in training;
    ``seed`` seeds the sampling, so two policies start from the same random draws (only
    start: generation stops a chunk once all its responses have ended, so from the second
    chunk on, two policies whose responses end at other lengths draw other numbers; the
    comparison stays unbiased, the pairing just less tight); ``batch_size`` prompts are
    generated at a time, all from one generator, so the samples depend on ``batch_size`` too:
    the same ``seed`` with another ``batch_size`` draws other samples (compare policies with
    the same ``batch_size``).

    ``prompts`` is a list (or any iterable) of strings; ``lm`` and ``reference`` are causal
    LMs (a PolicyWithValueHead's ``.lm``) over the tokenizer's vocabulary.
    """
    from ppo_edu.rlhf.trainer import check_scores

    # a list, tuple, numpy array, generator...; a single str: each character a prompt of its own
    prompts = text_list("prompts", prompts)
    if not prompts:
        raise ValueError("prompts is empty: there is nothing to evaluate the policy on")
    batch_size = require_count("batch_size", batch_size)
    require_bool("add_bos", add_bos)
    pad_id = require_pad_token(tokenizer)
    context_length_of(lm)  # a PolicyWithValueHead or a reward model: a clear TypeError
    device = next(lm.parameters()).device
    require_reference_on(reference, device)
    require_one_vocabulary(lm, reference, tokenizer)  # else "index out of range" inside the model
    generator = torch.Generator(device=device).manual_seed(require_seed("seed", seed))
    was_training = lm.training
    # the reference in eval mode too: with its dropout on, the KL and the fluency would be
    # noisy and drawn from the global torch RNG (different on every call with the same seed)
    reference_was_training = reference.training
    lm.eval()
    reference.eval()
    texts, responses, kls, nlls, lengths = [], [], [], [], []
    try:  # the caller's train/eval mode comes back even when a prompt or a model fails
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            q, qm = encode_prompts(tokenizer, chunk, context_length_of(lm), max_new_tokens, device, add_bos)
            gen = generate(lm, q, qm, max_new_tokens, tokenizer.eos_token_id, pad_id, temperature, generator)
            decoded = tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True)
            responses += decoded
            texts += [p + r for p, r in zip(chunk, decoded)]
            ids, am, P, mask = gen.input_ids, gen.attention_mask, gen.query_length, gen.response_mask
            logits, _ = lm_forward(lm, ids, am, P)
            ref_logits, _ = lm_forward(reference, ids, am, P)
            kls.append(full_kl(logits, ref_logits, mask, temperature).sum(1).cpu())
            ref_lp = logprobs_from_logits(ref_logits, ids[:, P:])
            nlls.append((-(ref_lp * mask).sum(1) / mask.sum(1)).cpu())
            lengths.append(mask.sum(1).float().cpu())
    finally:
        lm.train(was_training)
        reference.train(reference_was_training)
    # .cpu(): a reward_fn on a GPU may hand back CUDA scores
    scores = check_scores(reward_fn(texts), len(texts), texts).cpu().numpy()
    judge = (check_scores(judge_fn(texts), len(texts), texts, "judge_fn").mean().item()
             if judge_fn is not None else float("nan"))
    sample_kls = torch.cat(kls)
    return PolicyEval(
        score=float(scores.mean()), score_std=float(scores.std()), judge=judge,
        kl=sample_kls.mean().item(), ref_nll=torch.cat(nlls).mean().item(),
        distinct2=distinct_n(responses), response_length=torch.cat(lengths).mean().item(),
        texts=texts, responses=responses, scores=scores, kls=sample_kls.numpy(),
    )
