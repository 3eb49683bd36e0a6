"""Batched sampling from a causal LM: left-padded prompts, responses that end at EOS.

Prompts of different lengths are padded on the *left*, so every row's next token is
generated at the same column; the attention mask hides the pads and the position ids
count real tokens only (see :mod:`ppo_edu.rlhf.logprobs`).

A response ends at its first EOS, which belongs to the response (the model chose to
stop: that choice gets a log-probability, a value and the score). Every token after it
is set to the pad id and masked out. The mask comes from *where* the first EOS is, never
from comparing token ids with the pad id: with ``pad_token == eos_token`` (the usual GPT-2
set-up) an id comparison would mask the real EOS too (the review of TRL PR #5303 found TRL's
masks, ``query_responses != pad_token_id``, doing this).

Sampling is plain ancestral sampling from softmax(logits / temperature): no top-k, no
top-p, no repetition penalty. PPO's ratio needs the probability of each sampled token
under the policy that sampled it, and those filters would change that policy silently.
"""

from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass

import torch

from ppo_edu._checks import require_bool, require_count, require_same_shape
from ppo_edu.lm.reward import _context_length, text_ids
from ppo_edu.rlhf.logprobs import (
    position_ids_from_mask,
    require_causal_lm,
    require_left_padded,
    require_temperature,
)


@dataclass
class Generation:
    """Prompts and sampled responses, shapes ``(B, P)`` and ``(B, R)``."""

    query_ids: torch.Tensor  # (B, P) left-padded
    query_mask: torch.Tensor  # (B, P) 1 on real prompt tokens
    response_ids: torch.Tensor  # (B, R) pad id after the first EOS
    response_mask: torch.Tensor  # (B, R) 1 up to and including the first EOS

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)

    @property
    def query_length(self) -> int:
        return self.query_ids.shape[1]

    @property
    def response_lengths(self) -> torch.Tensor:
        """Real tokens of each response, its EOS included: (B,)."""
        return self.response_mask.sum(1)

    @property
    def last_index(self) -> torch.Tensor:
        """Index (into the response) of each row's last real token, where its score goes: (B,)."""
        return self.response_lengths - 1


def require_pad_token(tokenizer) -> int:
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token. Batched generation needs one to pad prompts. "
            "Add one (tokenizer.add_special_tokens({'pad_token': '<|pad|>'}) and resize the "
            "model's embeddings) or reuse EOS (tokenizer.pad_token = tokenizer.eos_token): "
            "ppo_edu builds masks from positions, so pad == eos is handled correctly."
        )
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: responses could never end")
    return tokenizer.pad_token_id


def require_reference_on(reference, device: torch.device) -> None:
    """TypeError for a reference that is a PolicyWithValueHead, ValueError for one on another device
    than the policy: both failed only in the first forward pass, after sampling, deep in torch."""
    from ppo_edu.rlhf.policy import PolicyWithValueHead

    if isinstance(reference, PolicyWithValueHead):
        raise TypeError("the reference must be the language model itself, and got a PolicyWithValueHead: "
                        "pass ppo_edu.rlhf.frozen_reference(policy) (or its .lm, frozen)")
    param = next(reference.parameters(), None)
    if param is not None and param.device != torch.device(device):
        raise ValueError(f"the reference model is on {param.device} but the policy is on {device}: "
                         f"move it there (reference.to({str(device)!r}))")


def require_one_vocabulary(lm, reference, tokenizer) -> None:
    """The tokenizer's ids must index the policy's embedding, and pi_ref (``reference``, or None
    where there is none) must share it: a pad token added to the tokenizer without resizing the
    model failed only inside the first forward pass ("index out of range in self"), and a
    reference over other tokens gave a KL of nothing."""
    rows = lm.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the policy's embedding has {rows} "
                         "rows: after adding a token (a pad token), call lm.resize_token_embeddings("
                         "len(tokenizer)) (ppo_edu.lm.load_lm does both)")
    get = getattr(reference, "get_input_embeddings", None)
    ref_rows = get().num_embeddings if get is not None else None
    if ref_rows is not None and ref_rows != rows:
        raise ValueError(f"the reference model's embedding has {ref_rows} rows and the policy's {rows}: "
                         "they must share one vocabulary (make the reference with "
                         "ppo_edu.rlhf.frozen_reference(policy))")


def encode_prompts(tokenizer, prompts: list[str], context_length: int, max_new_tokens: int,
                   device: torch.device | str = "cpu", add_bos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise ``prompts`` and pad them on the left: ``(query_ids, query_mask)``, shape (B, P).

    ``add_bos=True`` puts the tokenizer's BOS (GPT-2: ``<|endoftext|>``) before each prompt,
    the separator GPT-2-style models see before a new document; the tiny course model was
    trained that way, so a snippet opening after it reads as the start of a review.

    Raises a clear error for an empty list, an empty prompt, or a prompt that leaves no
    room for ``max_new_tokens`` in the model's ``context_length`` (GPT-2: 1024).
    """
    require_bool("add_bos", add_bos)  # "False" and "no" are true: a BOS came anyway
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: need at least one prompt to generate from")
    pad_id = require_pad_token(tokenizer)
    max_new_tokens = require_count("max_new_tokens", max_new_tokens)
    encoded = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} is a {type(prompt).__name__}, not a string")
        ids = text_ids(tokenizer, prompt)
        if len(ids) == 0:
            raise ValueError(f"prompt {i} ({prompt!r}) has no tokens; every prompt needs at least one")
        if add_bos:
            if tokenizer.bos_token_id is None:
                raise ValueError("add_bos=True but the tokenizer has no BOS token")
            ids = [tokenizer.bos_token_id] + ids
        if len(ids) + max_new_tokens > context_length:
            raise ValueError(
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that is "
                f"{len(ids) + max_new_tokens} > the model's context of {context_length} tokens. "
                "Shorten the prompt or generate fewer tokens."
            )
        encoded.append(ids)
    P = max(len(ids) for ids in encoded)
    query_ids = torch.full((len(encoded), P), pad_id, dtype=torch.long)
    query_mask = torch.zeros((len(encoded), P), dtype=torch.long)
    for i, ids in enumerate(encoded):
        query_ids[i, P - len(ids):] = torch.tensor(ids, dtype=torch.long)
        query_mask[i, P - len(ids):] = 1
    return query_ids.to(device), query_mask.to(device)


def response_mask_from_eos(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 for every token up to and including the first EOS of each row, 0 after. (B, R).

    Rows without an EOS (cut off at the length limit) are all ones.
    """
    if response_ids.dim() != 2:
        raise ValueError(f"response_ids must have shape (B, R), responses x tokens, got "
                         f"{tuple(response_ids.shape)}")
    is_eos = (response_ids == eos_token_id).long()
    eos_before = is_eos.cumsum(1) - is_eos  # number of EOS strictly before each position
    return (eos_before == 0).long()


def context_length_of(model) -> int:
    """The context length of ``model``, a causal LM (TypeError for a PolicyWithValueHead or a
    model with no LM head, see :func:`~ppo_edu.rlhf.logprobs.require_causal_lm`)."""
    require_causal_lm(model)
    return _context_length(model)


def _require_token_id(name: str, value, vocabulary: int | None) -> None:
    """ValueError unless ``value`` is an integer token id in [0, vocabulary) (no upper bound
    when the model's vocabulary is unknown): None failed only after sampling, and an EOS id the
    model cannot produce let every response run to the length limit."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer token id, got {value!r}")
    if value < 0 or (vocabulary is not None and value >= vocabulary):
        raise ValueError(f"{name}={value} is not a token of the model, whose ids are 0 to "
                         f"{'...' if vocabulary is None else vocabulary - 1}")


def _vocabulary_size(model) -> int | None:
    """Rows of ``model``'s input embedding (or its config's ``vocab_size``); None if unknown."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if embedding is not None and hasattr(embedding, "num_embeddings"):
        return int(embedding.num_embeddings)
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return size if isinstance(size, int) else None


def cache_argument(model) -> str:
    """The name under which ``model``'s forward takes the KV cache: ``cache`` from transformers
    5.24 on, ``past_key_values`` before (5.24 still accepts it with a warning; 5.40 drops it)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_of(output):
    """The KV cache a forward pass returned, under either name (see ``cache_argument``)."""
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    if cache is None:
        raise ValueError("the model returned no KV cache: call it with use_cache=True")
    return cache


def _sum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def inverse_cdf_tokens(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Row b's token: the first index whose cumulative probability exceeds ``uniforms[b]`` times
    the row's total. ``probs`` (B, V) >= 0, ``uniforms`` (B,) in [0, 1) -> (B,) token ids.

    A token of probability 0 is never chosen (its cumulative sum equals its left neighbour's),
    and a product that float rounding puts at the total picks the row's last token of
    positive probability. Sums run in float64 (float32 on Apple's MPS, which has no float64)."""
    dtype = _sum_dtype(probs.device)
    cdf = probs.to(dtype).cumsum(-1)
    target = (uniforms.to(dtype) * cdf[:, -1]).unsqueeze(1)
    tokens = torch.searchsorted(cdf, target, right=True).squeeze(1)
    vocabulary = probs.shape[-1]
    beyond = tokens >= vocabulary
    if beyond.any():
        last_positive = vocabulary - 1 - (probs.flip(-1) > 0).long().argmax(-1)
        tokens = torch.where(beyond, last_positive, tokens)
    return tokens


def sample_tokens(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``probs`` (B, V), drawn from that row's distribution: (B,) ids.

    ``torch.multinomial`` draws the same distribution, but on a CPU it took 2.7 ms for 32 rows of
    4,097 tokens, where this inverse-CDF draw (one uniform number per row, a cumulative sum and a
    binary search) took 0.1 ms: on the tiny GPT-2, 50 ms of a 0.9-s PPO step. The same
    ``generator`` seed gives the same tokens."""
    uniforms = torch.rand(probs.shape[0], generator=generator, device=probs.device,
                          dtype=_sum_dtype(probs.device))
    return inverse_cdf_tokens(probs, uniforms)


@torch.no_grad()
def generate(model, query_ids: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
             eos_token_id: int, pad_token_id: int, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> Generation:
    """Sample up to ``max_new_tokens`` tokens per prompt with a KV cache; stop rows at EOS.

    ``model`` is a causal LM (e.g. ``policy.lm``); ``query_ids`` and ``query_mask`` (B, P), left
    padded (:func:`encode_prompts`); ``eos_token_id`` and ``pad_token_id`` are integer ids of the
    model's vocabulary (checked before anything runs). A row that opens with pad tokens under
    mask 1 is refused (its mask does not mark the padding), unless the pad id is also the EOS
    or the model's BOS. Raises ``FloatingPointError`` if the logits at some step hold NaN or
    inf, instead of letting the sampler draw garbage (naming the temperature when the model's
    own logits were finite and only their division overflowed).
    """
    require_temperature(temperature)
    vocabulary = _vocabulary_size(model)
    _require_token_id("eos_token_id", eos_token_id, vocabulary)
    _require_token_id("pad_token_id", pad_token_id, vocabulary)
    # a whole number: 2.5 passed a ">= 1" test and failed after the first forward pass
    max_new_tokens = require_count("max_new_tokens", max_new_tokens)
    require_same_shape(query_ids=query_ids, query_mask=query_mask)
    require_left_padded(query_mask)
    B, P = query_ids.shape
    if P + max_new_tokens > context_length_of(model):
        raise ValueError(f"{P} prompt + {max_new_tokens} new tokens exceed the context "
                         f"of {context_length_of(model)}")
    # Pad tokens that open a row under mask 1: the mask does not mark that row's padding (an
    # all-ones mask on left-padded ids). Only the leading run is read (a pad id inside the text
    # can be a tokenizer's unk), and not where the pad id is also the EOS (GPT-2) or the
    # model's BOS, which add_bos puts first.
    bos_token_id = getattr(getattr(model, "config", None), "bos_token_id", None)
    if pad_token_id not in (eos_token_id, bos_token_id):
        leading_pad = (query_ids == pad_token_id).long().cumprod(dim=1).bool()
        unmasked_pad = leading_pad & query_mask.bool()
        if unmasked_pad.any():
            row, position = (int(i) for i in unmasked_pad.nonzero()[0])
            raise ValueError(
                f"query_ids row {row} opens with the pad token (id {pad_token_id}) at position "
                f"{position}, where query_mask is 1: the mask does not mark that row's padding (an "
                "all-ones mask on left-padded ids?); the policy would attend to it as text. Use "
                "encode_prompts' mask")
    cache_name = cache_argument(model)
    mask = query_mask.clone()
    positions = position_ids_from_mask(mask)
    out = model(input_ids=query_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    next_pos = positions[:, -1:] + 1
    tokens, finished = [], torch.zeros(B, dtype=torch.bool, device=query_ids.device)
    for step in range(max_new_tokens):
        logits = out.logits[:, -1].float() / temperature
        bad = ~torch.isfinite(logits).all(-1) & ~finished
        if bad.any():
            if bool(torch.isfinite(out.logits[:, -1].float())[bad].all()):
                raise FloatingPointError(
                    f"the policy's logits divided by temperature={temperature!r} overflow float32 at "
                    f"generation step {step} (rows {bad.nonzero().flatten().tolist()}): the logits "
                    "themselves are finite, the temperature is too small; use a larger one")
            raise FloatingPointError(
                f"the policy's logits hold NaN/inf at generation step {step} for rows "
                f"{bad.nonzero().flatten().tolist()}: the model's weights have diverged"
            )
        token = sample_tokens(torch.softmax(logits, -1), generator)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        newly_real = (~finished).long()
        finished = finished | (token == eos_token_id)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, newly_real.unsqueeze(1)], dim=1)
        out = model(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=next_pos,
                    use_cache=True, **{cache_name: cache_of(out)})
        next_pos = next_pos + 1
    response_ids = torch.stack(tokens, dim=1)
    response_mask = response_mask_from_eos(response_ids, eos_token_id)
    response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, pad_token_id))
    return Generation(query_ids, query_mask, response_ids, response_mask)
