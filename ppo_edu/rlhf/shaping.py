"""Dense rewards from the reward model's score of every prefix (potential-based shaping).

The reward model scores a response once, at its end, so PPO must work out which of the
tokens earned the score: the critic learns it slowly (its explained variance stays low),
and until it does every token of a response shares one noisy advantage. Potential-based
shaping (Ng, Harada & Russell 1999) hands out the score as it accrues: token t earns, on
top of its reward,

    F_t = gamma Phi(s_{t+1}) - Phi(s_t),    Phi(s) = reward-model score of the text so far,

with Phi = 0 after the last token (gamma is the returns' discount, 1 by default). Along any
response the discounted F_t telescope to -Phi(s_0), the score of the prompt alone, which
no token changes: each response's total return moves by a constant of its prompt, so the
best policy, and the KL-regularised optimum, stay what they were. The return from token t
moves by -Phi(s_t), a function of the state alone, like a baseline: what changes is the
credit each token gets before the critic has learned anything, how much it moved the score.

``prefix_potentials`` computes Phi for every prefix of every response in one forward
pass of a causal (GPT-2) reward model that shares the policy's tokenizer, such as the
shipped tiny one: each prefix is scored the way the model reads a whole text (the
text's tokens, then EOS), by giving every prefix's EOS its own row of a 4-D attention mask.
``text_prefix_potentials`` does the same for any ``reward_fn`` (a classifier with its own
tokenizer, such as Colab's DistilBERT) by decoding every prefix and scoring the texts:
exact too, at the cost of one scored text per response token (a single ``reward_fn`` call
on all the batch's prefixes, as many texts as the responses have tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ppo_edu._checks import require_same_shape, require_text_list
from ppo_edu.lm.reward import _context_length
from ppo_edu.rlhf.advantages import _require_prefix_mask
from ppo_edu.rlhf.generation import Generation

PotentialFn = Callable[[Sequence[str], Generation], torch.Tensor]


def shape_rewards(rewards: torch.Tensor, potentials: torch.Tensor, mask: torch.Tensor,
                  gamma: float = 1.0) -> torch.Tensor:
    """``rewards + gamma Phi_{t+1} - Phi_t`` on every real token, Phi = 0 after each row's last one.

    rewards, potentials, mask: ``(B, R)``; ``potentials[b, t]`` is Phi of the prompt and the
    first t response tokens. ``gamma`` must be the discount the returns use, or the best
    policy changes (Ng et al.'s condition). Padding stays 0 whatever it holds."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    require_same_shape(rewards=rewards, potentials=potentials, mask=mask)
    _require_prefix_mask(mask)
    real = mask.bool()
    bad = ~torch.isfinite(potentials) & real
    if bad.any():
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"potentials are not finite at response {row}, token {col}")
    phi = torch.where(real, potentials, torch.zeros_like(potentials)).to(rewards.dtype)
    next_phi = torch.cat([phi[:, 1:], torch.zeros_like(phi[:, :1])], dim=1)
    return torch.where(real, rewards + gamma * next_phi - phi, torch.zeros_like(rewards))


def _prompt_without_bos(generation: Generation, row: int, bos_id: int | None) -> list[int]:
    prompt = generation.query_ids[row][generation.query_mask[row].bool()].tolist()
    return prompt[1:] if prompt and bos_id is not None and prompt[0] == bos_id else prompt


def _score_eos_group(reward_model, rows, lengths, first: int, stop: int, pad_id: int, eos_id: int,
                     phi: torch.Tensor) -> None:
    """Fill ``phi[b, t]`` for t in [first, stop): row b holds its text, then one EOS per t."""
    counts = [max(0, min(stop, L) - first) for L in lengths]
    width = max(len(p) + len(r) + k for (p, r), k in zip(rows, counts))
    B = len(rows)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    positions = torch.zeros((B, width), dtype=torch.long)
    allowed = torch.eye(width, dtype=torch.bool).repeat(B, 1, 1)  # padding reads itself: no empty row
    for b, ((prompt, response), k) in enumerate(zip(rows, counts)):
        n = len(prompt) + len(response)
        ids[b, :n] = torch.tensor(prompt + response, dtype=torch.long)
        ids[b, n:n + k] = eos_id
        positions[b, :n] = torch.arange(n)
        positions[b, n:n + k] = len(prompt) + first + torch.arange(k)
        allowed[b, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
        seen = torch.arange(width) < (len(prompt) + first + torch.arange(k))[:, None]  # EOS t sees P + t tokens
        allowed[b, n:n + k] |= seen
    device = next(reward_model.parameters()).device
    dtype = next(reward_model.parameters()).dtype  # an additive mask must match the model's dtype
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
    hidden = reward_model.transformer(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      position_ids=positions.to(device)).last_hidden_state
    scores = reward_model.score(hidden).squeeze(-1).float().cpu()
    for b, ((prompt, response), k) in enumerate(zip(rows, counts)):
        n = len(prompt) + len(response)
        phi[b, first:first + k] = scores[b, n:n + k]


@torch.no_grad()
def prefix_potentials(reward_model, generation: Generation, bos_id: int | None,
                      eos_id: int) -> torch.Tensor:
    """Phi ``(B, R)``: the score of the prompt and the first t response tokens, then EOS, for
    t = 0 .. L-1 of each response (0 on padding), in one forward pass (more when long
    prompts leave the context too little room for one EOS per prefix).

    ``reward_model``: a one-output ``GPT2ForSequenceClassification`` (``.transformer`` and
    ``.score``) over the policy's own token ids, trained on text followed by EOS. The
    policy's BOS, if the prompts start with one, is dropped, as the reward model's inputs
    have none. Row b holds its text (prompt and all but the last response token), then L
    EOS tokens; EOS number t sits at position len(prompt) + t and attends only to the
    prompt, the first t response tokens and itself, which is what it would see at the
    end of that prefix on its own. The reward model is run in eval mode (dropout off) and its
    train/eval mode is restored afterwards."""
    for name in ("transformer", "score"):
        if not hasattr(reward_model, name):
            raise TypeError(f"prefix_potentials needs a GPT-2-style sequence classifier (with .transformer "
                            f"and .score), got {type(reward_model).__name__}; use text_prefix_potentials")
    if reward_model.config.num_labels != 1:
        raise ValueError(f"a reward model has one output, this one has {reward_model.config.num_labels}")
    pad_id = reward_model.config.pad_token_id
    context = _context_length(reward_model)  # the one lookup ppo_edu.lm uses
    B = generation.query_ids.shape[0]
    lengths = generation.response_lengths.tolist()
    rows = [(_prompt_without_bos(generation, b, bos_id), generation.response_ids[b, :lengths[b] - 1].tolist())
            for b in range(B)]
    # EOS number t sits at position len(prompt) + t: the longest scored prefix must fit the context
    longest = max(len(p) + L for (p, _), L in zip(rows, lengths))
    if longest > context:
        raise ValueError(f"a prompt and its response are {longest} tokens, more than the reward model's "
                         f"context of {context}")
    # One pass holds every row's text and a group of its EOS tokens: as many as the context
    # leaves room for after the longest text (all of them, unless prompts are long).
    group = context - max(len(p) + len(r) for p, r in rows)
    phi = torch.zeros(generation.response_ids.shape)
    # eval mode (dropout off), as reward_fn_from_model scores: else the potentials are noisy and
    # drawn from the global torch RNG; the caller's train/eval mode comes back afterwards
    was_training = reward_model.training
    reward_model.eval()
    try:
        for first in range(0, max(lengths), group):
            _score_eos_group(reward_model, rows, lengths, first, min(first + group, max(lengths)),
                             pad_id, eos_id, phi)
    finally:
        reward_model.train(was_training)
    return phi.to(generation.response_ids.device)


def text_prefix_potentials(reward_fn: Callable[[list[str]], torch.Tensor], tokenizer,
                           prompts: Sequence[str], generation: Generation) -> torch.Tensor:
    """Phi ``(B, R)`` for any ``reward_fn(texts) -> (B,)``: each prefix decoded and scored.
    ``reward_fn`` must return numbers (as for the trainer's ``check_scores``: no booleans,
    strings or complex numbers)."""
    from ppo_edu.rlhf.trainer import _numbers  # the trainer imports this module

    require_text_list("prompts", prompts)
    if len(prompts) != generation.response_ids.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {generation.response_ids.shape[0]} responses")
    texts, where = [], []
    for b, prompt in enumerate(prompts):
        response = generation.response_ids[b].tolist()
        for t in range(int(generation.response_lengths[b])):
            texts.append(prompt + tokenizer.decode(response[:t], skip_special_tokens=True))
            where.append((b, t))
    scores = _numbers(reward_fn(texts), "reward_fn", "one float score per prefix").to(torch.float32).cpu()
    if scores.shape != (len(texts),):
        raise ValueError(f"reward_fn returned shape {tuple(scores.shape)} for {len(texts)} prefixes")
    phi = torch.zeros(generation.response_ids.shape)
    rows, cols = zip(*where)
    phi[list(rows), list(cols)] = scores
    return phi.to(generation.response_ids.device)


def reward_model_potentials(reward_model, tokenizer) -> PotentialFn:
    """The ``potential_fn`` for :class:`~ppo_edu.rlhf.RLHFTrainer` from a GPT-2 reward model
    that shares the policy's tokenizer (see :func:`prefix_potentials`)."""
    if reward_model.config.vocab_size != len(tokenizer):
        raise ValueError(f"the reward model's vocabulary ({reward_model.config.vocab_size}) is not the "
                         f"tokenizer's ({len(tokenizer)}): use text_prefix_potentials")
    reward_model.eval()

    def potential_fn(prompts, generation):
        return prefix_potentials(reward_model, generation, tokenizer.bos_token_id, tokenizer.eos_token_id)

    return potential_fn
