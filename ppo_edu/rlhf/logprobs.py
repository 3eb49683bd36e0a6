"""Per-token log-probabilities, aligned with the tokens that produced them.

A causal LM's output at position ``i`` is the distribution of the token at ``i + 1``.
For a sequence ``query (P tokens) + response (R tokens)`` the response token ``t`` sits at
position ``P + t`` and its distribution comes from the logits at position ``P + t - 1``:
the logits we need are positions ``P - 1 ... P + R - 2``. Taking ``P ... P + R - 1``
instead (one token late) is the classic off-by-one bug (the ARENA RLHF tests catch it);
the value head has the same alignment, V(s_t) read at the last token *before* token t.

Left padding: a row with ``k`` pad tokens in front must see positions ``0, 1, ...`` for
its real tokens, not ``k, k + 1, ...``. ``transformers`` does not infer position ids from
the attention mask in a plain forward call, so every forward here passes them explicitly
(without them, the logprobs of the same text would change with the amount of padding; the
same family of left/right padding mismatches as TRL #2778, a score read at a right-padding
position of left-padded rows, and #1482, padded prompts passed to ``generate`` with an
all-ones mask). Shapes: ``(B, L)`` batch x tokens, ``(B, L, V)`` with the vocabulary.
"""

from __future__ import annotations

import math
import numbers

import torch

from ppo_edu._checks import require_same_shape


def require_temperature(temperature) -> float:
    """``temperature`` as a float, or ValueError unless it is a finite number > 0: softmax(logits / T)
    with T < 0 is the *reversed* distribution (the least likely token becomes the likeliest), with
    T = 0 it is NaN, and both came back from the log-prob and KL helpers without an error."""
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not (temperature > 0 and math.isfinite(temperature))):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def require_causal_lm(model) -> None:
    """TypeError unless ``model`` is a causal language model itself: a
    :class:`~ppo_edu.rlhf.policy.PolicyWithValueHead` (pass its ``.lm``) failed inside torch
    ("unexpected keyword argument 'position_ids'"), and a model with no LM head (a reward model,
    a sequence classifier, a bare transformer) with "logits (B, 0) do not line up". A model
    without ``get_output_embeddings`` (a stand-in) is let through."""
    from ppo_edu.rlhf.policy import PolicyWithValueHead  # policy imports this module

    if isinstance(model, PolicyWithValueHead):  # was "'PolicyWithValueHead' object has no attribute 'config'"
        raise TypeError("this takes the language model, and got a PolicyWithValueHead: pass its .lm "
                        "(e.g. evaluate_policy(trainer.policy.lm, ...), response_logprobs(policy.lm, ...))")
    get_head = getattr(model, "get_output_embeddings", None)
    if callable(get_head) and get_head() is None:
        raise TypeError(f"this takes a causal language model with an LM head (e.g. policy.lm, or "
                        f"AutoModelForCausalLM), got a {type(model).__name__}, which has none: a reward "
                        "model or sequence classifier gives no next-token logits")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, 2, ... counted over real tokens only. Shape (B, L).

    Left padding gets 0; padding after the last real token (a response after its EOS)
    repeats that token's position. Both are masked, so their positions never matter."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def require_left_padded(query_mask: torch.Tensor, name: str = "query_mask") -> None:
    """Raise ValueError unless every row of a prompt's mask is 0s then 1s, ending on a real token.

    With right padding (or a pad between real tokens) the first response token would be
    predicted from a pad position and scored at the wrong position: a padding mismatch of the
    kind of TRL #2778 (a score read at the wrong position), only silent. ``encode_prompts``
    pads on the left."""
    if query_mask.dim() != 2 or query_mask.shape[1] < 1:
        raise ValueError(f"{name} must have shape (B, P) with P >= 1, got {tuple(query_mask.shape)}")
    m = query_mask.long()
    if ((m != 0) & (m != 1)).any():
        raise ValueError(f"{name} must hold only 0 (padding) and 1 (real token)")
    right_padded = m[:, -1] == 0
    gap = (m[:, 1:] < m[:, :-1]).any(1)  # a pad after a real token
    bad = right_padded | gap
    if bad.any():
        row = int(bad.nonzero()[0])
        what = ("ends on padding" if right_padded[row]
                else f"has padding at position {int((m[row, 1:] < m[row, :-1]).nonzero()[0]) + 1} "
                     "after a real token")
        raise ValueError(f"{name} row {row} {what}: prompts must be padded on the left (0s, then "
                         "1s up to the last position), as encode_prompts does")


def response_slice(query_length: int, response_length: int) -> slice:
    """The positions whose outputs predict (or value the state before) each response token."""
    if query_length < 1:
        raise ValueError("the query needs at least one token: the first response token is "
                         "predicted from the last query position")
    return slice(query_length - 1, query_length - 1 + response_length)


def lm_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               query_length: int, output_hidden_states: bool = False):
    """Run ``model`` on ``(B, P + R)`` tokens with correct position ids.

    Returns ``(logits, hidden)`` restricted to the R positions that predict the response
    tokens: logits ``(B, R, V)`` and the last hidden state ``(B, R, H)`` (or None).
    Only those positions go through the LM head (``logits_to_keep``), which saves memory
    with a 50k vocabulary. ``model`` is the causal LM itself (``policy.lm``, not the
    PolicyWithValueHead; not a reward model).
    """
    require_causal_lm(model)
    require_same_shape(input_ids=input_ids, attention_mask=attention_mask)
    R = input_ids.shape[1] - query_length
    if R < 1:
        raise ValueError(f"no response tokens: sequence length {input_ids.shape[1]}, query {query_length}")
    response_slice(query_length, R)  # refuses an empty query
    require_left_padded(attention_mask[:, :query_length], "attention_mask over the query")
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        output_hidden_states=output_hidden_states,
        logits_to_keep=R + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1]  # the last position predicts a token after the response
    hidden = out.hidden_states[-1][:, response_slice(query_length, R)] if output_hidden_states else None
    return logits, hidden


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor,
                         temperature: float = 1.0) -> torch.Tensor:
    """log pi(token_t | prefix) for each t: logits ``(B, R, V)``, tokens ``(B, R)`` -> ``(B, R)``.

    ``temperature`` must be the one used for sampling: the behaviour policy is
    softmax(logits / temperature), and the ratio r_t(theta) must compare that policy.
    """
    temperature = require_temperature(temperature)
    if logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not line up with tokens {tuple(tokens.shape)}")
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature) per position, ``(B, R, V)`` -> ``(B, R)``."""
    temperature = require_temperature(temperature)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    # a token of probability 0 (a logit of -inf: a masked vocabulary) adds 0 (0 log 0 = 0),
    # not 0 * (-inf) = NaN
    return -(logp.exp() * torch.where(logp == -math.inf, 0.0, logp)).sum(-1)


def response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      query_length: int, temperature: float = 1.0) -> torch.Tensor:
    """log pi(response token t | query, response[:t]) for a plain causal LM, shape (B, R).

    ``input_ids``, ``attention_mask``: ``(B, P + R)``, the left-padded queries followed by
    the responses; ``query_length`` is P, where the responses start. ``temperature`` must be
    the one the responses were sampled at (the log-probs of the distribution sampled from).
    """
    require_temperature(temperature)  # before the forward pass
    logits, _ = lm_forward(model, input_ids, attention_mask, query_length)
    return logprobs_from_logits(logits, input_ids[:, query_length:], temperature)
