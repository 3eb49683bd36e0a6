"""Training loops for lesson 5: supervised fine-tuning (SFT) of the LM and the reward model.

Both return a history (a list of dicts) that ``ppo_edu.lm.plots`` draws.

- :func:`sft_train`: next-token cross-entropy on packed blocks of text (GPT-2 style);
- :func:`train_reward_model`: the Bradley-Terry loss on every preference pair inside each
  minibatch of rated snippets (a batch of 64 snippets yields ~1,300 pairs at margin 1 for
  the cost of 64 forward passes, instead of 2 per pair).

How the shipped models relate to these loops (they were not all trained by them):

- ``tools/train_tiny_lm.py`` (the tiny GPT-2) has its *own* loop, with the same loss and
  the same packing (:func:`packed_blocks`, a fresh shuffle every epoch) as
  :func:`sft_train` but its own schedule: 12 epochs from random weights, AdamW
  (betas 0.9, 0.95, weight decay 0.1) at peak lr 4e-3, 100 warmup steps, cosine decay to
  10% over all epochs, dropout 0.05, and the epoch with the best validation perplexity
  kept. It uses :func:`text_nll` and :func:`generate` from here.
- ``tools/train_reward_model.py`` (the reward model) calls :func:`train_reward_model`
  once per epoch with ``epochs=1`` (5 epochs, lr 3e-4, dropout 0.1): each call builds a
  new AdamW (its moment estimates start from zero every epoch) and a new schedule, so the
  learning rate restarts its cosine decay every epoch; the 30 warmup steps are in the
  first epoch only; the epoch with the best validation accuracy is kept.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ppo_edu._checks import require_count, require_seed, require_text_list
from ppo_edu.lm.bradley_terry import (
    _check_margin,
    bradley_terry_loss,
    count_preference_pairs,
    make_preference_pairs,
    pairwise_accuracy,
)
from ppo_edu.lm.data import validate_ratings
from ppo_edu.lm.reward import _check_texts, _context_length, reward_model_scores, text_ids


# ----------------------------------------------------------------------------- the LM
def packed_blocks(token_ids: list[list[int]], eos_id: int, block: int, rng: np.random.Generator) -> torch.Tensor:
    """Shuffle the texts, join them as ``<eos> t1 <eos> t2 <eos> ...`` and cut into ``(N, block)``."""
    order = rng.permutation(len(token_ids))
    stream = [eos_id]
    for i in order:
        stream.extend(token_ids[i])
        stream.append(eos_id)
    n = len(stream) // block
    if n == 0:
        raise ValueError(f"{len(stream)} tokens of text do not fill one block of {block}")
    return torch.tensor(stream[: n * block], dtype=torch.long).view(n, block)


@torch.no_grad()
def text_nll(model, tokenizer, texts: list[str], batch_size: int = 64) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and token count of ``<eos> text <eos>`` for each text.

    Every token after the leading ``<eos>`` is predicted, the closing ``<eos>`` included, so
    the model is also scored on knowing where a review ends. Scoring runs in eval mode
    (dropout off); the model's own train/eval mode is restored afterwards, also when it
    raises. A text too long for the context is a ValueError, raised before anything runs.
    """
    texts = _check_texts(texts)
    batch_size = require_count("batch_size", batch_size)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    # the padding is masked out of the loss: any id will do, and the hub's gpt2 has no pad token
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = text_ids(tokenizer, texts)
    limit = _context_length(model)
    for i, s in enumerate(ids):  # all of them, before the model is touched
        if len(s) + 2 > limit:
            raise ValueError(f"texts[{i}] is {len(s) + 2} tokens (with EOS twice), more than the "
                             f"model's context of {limit}")
    was_training = model.training
    model.eval()
    try:
        return _summed_nll(model, ids, eos, pad, device, batch_size)
    finally:
        model.train(was_training)


def _summed_nll(model, ids, eos: int, pad: int, device, batch_size: int) -> tuple[float, int]:
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        seqs = [[eos] + list(s) + [eos] for s in ids[start:start + batch_size]]
        width = max(map(len, seqs))
        x = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(x)
        for row, s in enumerate(seqs):
            x[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        x, mask = x.to(device), mask.to(device)
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
        target, tmask = x[:, 1:], mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                reduction="none").view_as(target)
        total += nll[tmask].sum().item()
        count += int(tmask.sum())
    return total, count


def perplexity(model, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    """Per-token perplexity ``exp(mean NLL)`` of ``texts`` (see :func:`text_nll`)."""
    texts = _check_texts(texts)
    total, count = text_nll(model, tokenizer, texts, batch_size)
    return math.exp(total / count)


def _check_positive(name: str, value, *, integer: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite number > 0 (an integer if asked)."""
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value <= 0:
        kind = "an integer >= 1" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_count(name: str, value, minimum: int = 0) -> None:
    """ValueError naming ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_optimiser(weight_decay, grad_clip) -> None:
    """A negative clip norm flips every gradient (clip_grad_norm_ scales by max_norm / norm)
    and 0 zeroes them; a negative weight decay grows the weights. Both train silently wrong."""
    _check_positive("grad_clip", grad_clip)
    if (isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float, np.number))
            or not math.isfinite(weight_decay) or weight_decay < 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")


def _check_eval(eval_texts, eval_every) -> None:
    """Held-out evaluation needs both the texts and a cadence; one without the other is a mistake."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) or eval_every < 0:
        raise ValueError(f"eval_every must be an integer >= 0 (0 = no evaluation), got {eval_every!r}")
    if eval_texts is not None and eval_every == 0:
        raise ValueError("eval_texts were given but eval_every=0, so they would never be evaluated; "
                         "pass eval_every=N (evaluate every N steps and at the end)")
    if eval_texts is None and eval_every:
        raise ValueError(f"eval_every={eval_every} but no eval_texts to evaluate on")


def _require_fits(name: str, tokenizer, texts: list[str], context: int, extra: int, what: str) -> None:
    """ValueError naming the first text whose tokens plus ``extra`` special tokens exceed ``context``."""
    for i, ids in enumerate(text_ids(tokenizer, list(texts))):
        if len(ids) + extra > context:
            raise ValueError(f"{name}[{i}] is {len(ids) + extra} tokens {what}, longer than the model's "
                             f"context of {context}; shorten it or leave it out")


def warmup_cosine_scale(step: int, steps: int, warmup_steps: int) -> float:
    """The learning rate of step ``step`` (from 0) of ``steps``, as a fraction of the peak.

    Linear warmup, (s + 1) / w for the first w = ``warmup_steps`` steps, then a cosine from 1
    towards 0.1: ``0.1 + 0.45 (1 + cos(pi (s - w) / (n - w)))``. 0.1 is the limit, not the last
    step's rate, which is about ``0.1 + 2.2 / (n - w)^2`` (0.325 for n = 3 without warmup;
    within 0.01 of 0.1 only from about 15 steps after the warmup). A run no longer than its
    warmup never decays: its last step runs at n / w."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, steps - warmup_steps)))


def sft_train(model, tokenizer, texts: list[str], *, steps: int, batch_size: int = 16, block: int | None = None,
              lr: float = 3e-4, weight_decay: float = 0.1, grad_clip: float = 1.0, warmup_steps: int = 0,
              seed: int = 0, eval_texts: list[str] | None = None, eval_every: int = 0,
              progress: bool = True) -> list[dict]:
    """Supervised fine-tuning: next-token cross-entropy on packed blocks of ``texts``.

    ``steps`` optimiser steps of ``batch_size`` blocks of ``block`` tokens (default: the
    model's context), AdamW with linear warmup then cosine decay towards 10% of ``lr``
    (:func:`warmup_cosine_scale`: 10% is the limit, reached only by long runs).

    With ``eval_texts`` and ``eval_every`` (>= 1), the held-out perplexity is logged every
    ``eval_every`` steps and at the end (one without the other is a ValueError). Returns
    the history: one dict per step with ``step, loss, lr`` (and ``eval_ppl`` where measured).
    It starts with ``torch.manual_seed(seed)``: the caller's global torch RNG is reset (the
    block order comes from its own numpy generator seeded with ``seed``). The model is
    left in eval mode.
    """
    texts = _check_texts(texts)
    _check_count("steps", steps, 1)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("lr", lr)
    _check_optimiser(weight_decay, grad_clip)
    _check_count("warmup_steps", warmup_steps)
    context = _context_length(model)
    if block is None:
        block = context
    elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 2 <= block <= context:
        raise ValueError(f"block must be an integer in [2, {context}] (the model's context; a block "
                         f"of one token has no next token to predict), got {block!r}")
    _check_eval(eval_texts, eval_every)
    if eval_texts is not None:
        eval_texts = _check_texts(eval_texts)
        # text_nll reads <eos> text <eos>: refuse a text too long for that now, not at the
        # first evaluation after eval_every steps of training
        _require_fits("eval_texts", tokenizer, eval_texts, context, extra=2, what="with EOS twice")
    seed = require_seed("seed", seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    ids = [list(s) for s in text_ids(tokenizer, texts)]
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    blocks, cursor = packed_blocks(ids, eos, block, rng), 0
    if len(blocks) < batch_size:
        raise ValueError(
            f"the {len(texts)} texts pack into {len(blocks)} blocks of {block} tokens, fewer than "
            f"batch_size={batch_size}: pass more texts, a smaller batch_size or a smaller block"
        )
    history = []
    model.train()
    for step in tqdm(range(steps), desc="SFT", disable=not progress):
        if cursor + batch_size > len(blocks):
            blocks, cursor = packed_blocks(ids, eos, block, rng), 0
        x = blocks[cursor:cursor + batch_size].to(device)
        cursor += batch_size
        scale = warmup_cosine_scale(step, steps, warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        loss = model(input_ids=x, labels=x).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SFT loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        row = {"step": step + 1, "loss": loss.item(), "lr": lr * scale}
        if eval_texts is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            row["eval_ppl"] = perplexity(model, tokenizer, eval_texts)
            model.train()
        history.append(row)
    model.eval()
    return history


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 40, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """Sample one continuation per prompt (``""`` = a review from scratch); returns prompt + continuation.

    Each prompt is preceded by ``<|endoftext|>``, the separator the tiny model was trained
    after, and decoding stops at ``<|endoftext|>``. A prompt that leaves no room for
    ``max_new_tokens`` in the model's context (the tiny model: 128 tokens) is a ValueError,
    raised before anything is sampled. Sampling starts with ``torch.manual_seed(seed)``:
    the caller's global torch RNG is reset (and advanced by the sampling). It runs in eval
    mode; the model's own train/eval mode is restored afterwards, also when it raises.
    """
    require_text_list("prompts", prompts)
    prompts = list(prompts)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{i}] is a {type(prompt).__name__}, not a str")
    if isinstance(temperature, bool) or not (isinstance(temperature, numbers.Real) and 0.0 < temperature < math.inf):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r} (an infinite one "
                         "samples every token uniformly)")
    if isinstance(top_p, bool) or not (isinstance(top_p, numbers.Real) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] (1 = no nucleus filtering), got {top_p!r}")
    max_new_tokens = require_count("max_new_tokens", max_new_tokens)
    context = _context_length(model)
    encoded = []
    for i, prompt in enumerate(prompts):
        ids = [tokenizer.eos_token_id] + text_ids(tokenizer, prompt)
        if len(ids) + max_new_tokens > context:
            raise ValueError(
                f"prompts[{i}] is {len(ids)} tokens with its leading <|endoftext|>; with "
                f"max_new_tokens={max_new_tokens} that is {len(ids) + max_new_tokens} > the model's "
                f"context of {context} tokens. Shorten the prompt or generate fewer tokens."
            )
        encoded.append(ids)
    seed = require_seed("seed", seed)
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = []
        for ids in encoded:
            x = torch.tensor([ids], device=device)
            y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=True,
                               temperature=float(temperature), top_k=top_k, top_p=float(top_p),
                               max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id)
            out.append(tokenizer.decode(y[0, 1:], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- the reward model
def reward_accuracy(model, tokenizer, texts: list[str], ratings, margin: float = 1.0,
                    batch_size: int = 64) -> dict:
    """Held-out pairwise accuracy of a reward model on all pairs with a rating gap >= ``margin``.

    Returns ``{"accuracy", "pairs", "scores" (np.ndarray), "pearson_r"}``; ``pearson_r`` is
    None when every score is the same (a constant scorer has no correlation, and NaN would
    travel silently into a log).
    """
    ratings = validate_ratings(ratings)
    texts = _check_texts(texts)
    if len(texts) != len(ratings):
        raise ValueError(f"{len(texts)} texts but {len(ratings)} ratings")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = reward_model_scores(model, tokenizer, texts, batch_size=batch_size).numpy()
    finally:
        model.train(was_training)
    pairs = make_preference_pairs(ratings, margin)
    # ptp, not std: the std of 100 equal scores of 0.1 rounds to 3e-17, and corrcoef to NaN
    r = None if np.ptp(scores) == 0 else float(np.corrcoef(scores, ratings)[0, 1])
    return {"accuracy": pairwise_accuracy(scores, pairs), "pairs": len(pairs), "scores": scores,
            "pearson_r": r}


def _check_loss(loss_fn, loss) -> None:
    """What ``loss_fn`` returned, if it is a 0-d tensor with a gradient: a (P,) loss per pair
    failed with "Boolean value of Tensor with more than one value is ambiguous"."""
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn {name} returned a {type(loss).__name__}; it must return a 0-d "
                        "torch.Tensor (the mean loss over the pairs), with its gradient")
    if loss.dim() != 0:
        raise ValueError(f"loss_fn {name} returned a tensor of shape {tuple(loss.shape)}; it must "
                         "return a 0-d tensor, one loss for the batch (average it: .mean())")
    if not loss.requires_grad:
        raise ValueError(f"loss_fn {name} returned a loss without a gradient (was it detached, "
                         "or computed through numpy or .item()?): there is nothing to train")


def train_reward_model(model, tokenizer, texts: list[str], ratings, *, margin: float = 1.0, epochs: float = 1.0,
                       batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.01, grad_clip: float = 1.0,
                       warmup_steps: int = 20, seed: int = 0,
                       loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = bradley_terry_loss,
                       eval_texts: list[str] | None = None, eval_ratings=None, eval_every: int = 0,
                       progress: bool = True) -> list[dict]:
    """Fit a one-output reward model to human ratings with the Bradley-Terry loss.

    Each step draws a minibatch of ``batch_size`` snippets and applies
    ``loss_fn(r_chosen, r_rejected)`` to every pair in it whose ratings differ by at least
    ``margin`` (> 0), scoring the snippets (EOS appended, score read at the EOS) only when
    the batch has such a pair; a batch without one is skipped (no forward pass, no
    optimiser step). ``epochs`` (> 0) may be fractional (a short run:
    ``max(1, round(epochs * max(1, len(texts) // batch_size)))`` steps; with fewer texts
    than ``batch_size`` an epoch is one step on all of them). Each
    call makes a fresh AdamW and runs linear warmup over ``warmup_steps`` then cosine decay
    towards 10% of ``lr`` over its own steps (:func:`warmup_cosine_scale`; a run no longer
    than its warmup, 20 steps by default, never decays).
    ``loss_fn`` must return a 0-d tensor with a gradient (a TypeError or ValueError naming
    it otherwise, before any backward pass). With ``eval_texts``/``eval_ratings`` and
    ``eval_every`` (>= 1), held-out pairwise accuracy (same margin) is logged every
    ``eval_every`` steps and at the end; eval texts without ``eval_every``, or the reverse,
    is a ValueError. Returns the history: one dict per step with ``step, pairs, lr``, plus
    ``loss, batch_accuracy`` on the steps whose batch had a pair (and ``eval_accuracy``
    where measured). It starts with ``torch.manual_seed(seed)``: the caller's global torch
    RNG is reset (dropout draws from it; the batches come from a numpy generator seeded
    with ``seed``). The model is left in eval mode.
    """
    texts = _check_texts(texts)
    ratings = validate_ratings(ratings)
    if len(texts) != len(ratings):
        raise ValueError(f"{len(texts)} texts but {len(ratings)} ratings")
    margin = _check_margin(margin)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function (r_chosen, r_rejected) -> 0-d loss tensor, like "
                        f"bradley_terry_loss, got {type(loss_fn).__name__}")
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size, integer=True)
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (pairs are formed inside a batch), got {batch_size}")
    _check_positive("lr", lr)
    _check_optimiser(weight_decay, grad_clip)
    _check_count("warmup_steps", warmup_steps)
    _check_eval(eval_texts, eval_every)
    if eval_texts is None and eval_ratings is not None:
        raise ValueError("eval_ratings were given without eval_texts")
    if eval_texts is not None:
        eval_texts = _check_texts(eval_texts)
        if eval_ratings is None:
            raise ValueError("eval_texts were given without eval_ratings")
        eval_ratings = validate_ratings(eval_ratings, "eval_ratings")
        if len(eval_texts) != len(eval_ratings):
            raise ValueError(f"{len(eval_texts)} eval_texts but {len(eval_ratings)} eval_ratings")
    # each text is scored with an EOS appended: refuse one too long for that before training,
    # not at the first batch (or evaluation) that happens to hold it
    context = _context_length(model)
    _require_fits("texts", tokenizer, texts, context, extra=1, what="with its EOS")
    if eval_texts is not None:
        _require_fits("eval_texts", tokenizer, eval_texts, context, extra=1, what="with its EOS")
    if count_preference_pairs(ratings, margin) == 0:
        # else no batch has a pair, nothing is ever trained and a normal-looking history comes back
        raise ValueError(f"no two ratings differ by at least margin={margin:g}: there are no preference "
                         "pairs to train on")
    seed = require_seed("seed", seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    steps_per_epoch = max(1, len(texts) // batch_size)
    steps = max(1, round(epochs * steps_per_epoch))  # any epochs > 0 trains at least one step
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    history, order, cursor = [], rng.permutation(len(texts)), 0
    model.train()
    for step in tqdm(range(steps), desc="reward model", disable=not progress):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(texts)), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        pairs = np.stack(np.nonzero(ratings[idx][:, None] - ratings[idx][None, :] >= margin), axis=1)
        scale = warmup_cosine_scale(step, steps, warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        row = {"step": step + 1, "lr": lr * scale, "pairs": len(pairs)}
        if len(pairs):
            scores = reward_model_scores(model, tokenizer, [texts[i] for i in idx], batch_size=batch_size)
            chosen, rejected = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
            loss = loss_fn(scores[chosen], scores[rejected])
            _check_loss(loss_fn, loss)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"reward-model loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            row["loss"] = loss.item()
            row["batch_accuracy"] = pairwise_accuracy(scores.detach(), pairs)
        if eval_texts is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            row["eval_accuracy"] = reward_accuracy(model, tokenizer, eval_texts, eval_ratings, margin)["accuracy"]
            model.train()
        history.append(row)
    model.eval()
    return history
