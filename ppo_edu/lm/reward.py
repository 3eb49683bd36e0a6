"""Reward functions: ``texts -> tensor of shape (B,)``, one scalar per text.

- :func:`reward_fn_from_model` scores texts with a sequence-classification reward model
  (the shipped Bradley-Terry RM, or any ``num_labels=1`` model): the RLHF reward.
- :func:`sentiment_reward_fn` scores with a hub sentiment classifier (Colab:
  ``lvwerra/distilbert-imdb``, as in the seed): the logit of the positive class.
- :func:`vader_compound` is the VADER lexicon's compound score in [-1, 1]: no training,
  no model, a judge the policy never trained on (lesson 6's over-optimisation check). It
  returns a float64 numpy array, not a tensor (``rlhf.setups.judge_fn`` wraps it in one).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ppo_edu._checks import require_binary, require_count, require_device, require_text_list, text_list

RewardFn = Callable[[list[str]], torch.Tensor]


def _check_texts(texts) -> list[str]:
    require_text_list("texts", texts)
    texts = list(texts)
    if not texts:
        raise ValueError("texts is an empty list: there is nothing to score or train on")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a str")
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty: there is nothing to score")
    return texts


def text_ids(tokenizer, texts):
    """Token ids of free text (one str or a list), with no special tokens added *or recognised*.

    A text that spells a special token, say ``"Fun.<|pad|>"``, is tokenized as the characters
    it is made of, never as the pad or EOS id: a policy whose decoded response contains
    ``<|endoftext|>`` must not be able to put a control token in front of the reward model,
    the judge or itself. (The tokenizer's default, ``split_special_tokens=False``, would.)
    This holds for byte-level BPE tokenizers (GPT-2's, the course's), whose pieces never make
    up a special token; a tokenizer whose own vocabulary holds the string, or that maps
    unknown text to EOS, can still produce the id.
    """
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def encode_for_reward(tokenizer, texts: list[str], max_length: int, truncate: bool = False) -> list[list[int]]:
    """Token ids of each text followed by EOS (the format the shipped reward model was trained on).

    A text whose ids + EOS exceed ``max_length`` (the model's context) raises ValueError,
    or with ``truncate=True`` keeps its first ``max_length - 1`` tokens (then EOS).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    out = []
    for i, ids in enumerate(text_ids(tokenizer, list(texts))):
        ids = list(ids)
        if not ids or ids[-1] != eos:
            ids.append(eos)
        if len(ids) > max_length:
            if not truncate:
                raise ValueError(
                    f"texts[{i}] is {len(ids)} tokens with EOS, longer than the model's context of "
                    f"{max_length}; shorten it or pass truncate=True (keeps the first {max_length - 1} tokens)"
                )
            ids = ids[: max_length - 1] + [eos]
        out.append(ids)
    return out


def pad_right(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``(B, L)``, right-padded with ``pad_id``."""
    width = max(map(len, batch))
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def last_token_scores(token_scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Pick each row's score at its last real token: ``(B, L), (B, L) -> (B,)``.

    ``token_scores[b, t]`` is a score computed at every position (a reward model's score
    head applied to every hidden state); only the last *real* position has seen the whole
    text. Works for right padding (real tokens first), left padding (real tokens last)
    and no padding: the index is the largest ``t`` with ``attention_mask[b, t] == 1``.
    """
    if token_scores.shape != attention_mask.shape or token_scores.ndim != 2:
        raise ValueError(f"token_scores {tuple(token_scores.shape)} and attention_mask "
                         f"{tuple(attention_mask.shape)} must both have shape (B, L)")
    require_binary("attention_mask", attention_mask)  # a 0.25 would count as a real token
    if not bool((attention_mask.sum(-1) > 0).all()):
        raise ValueError("a row of attention_mask has no real token")
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    last = (positions * (attention_mask > 0)).argmax(-1)
    return token_scores.gather(1, last.unsqueeze(1)).squeeze(1)


def _context_length(model) -> int:
    config = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot find the context length of this {type(model).__name__} in its config "
                     "(none of n_positions, max_position_embeddings, n_ctx)")


def reward_model_scores(model, tokenizer, texts: list[str], device=None, batch_size: int = 64,
                        truncate: bool = False) -> torch.Tensor:
    """Scores ``(B,)`` (float32, CPU) of ``texts`` by a one-output sequence-classification model.

    Each text is tokenised, EOS is appended, the batch is right-padded with the pad token
    and the model reads the score at the last real token (the EOS), which
    ``transformers`` finds as the last token that is not ``config.pad_token_id``. That is
    why the pad token must exist and differ from EOS: with pad == eos the score would be
    read before the EOS, or on padding. Gradients flow (call inside ``torch.no_grad()``
    when you only need the values).
    """
    texts = _check_texts(texts)
    batch_size = require_count("batch_size", batch_size)
    pad_id = model.config.pad_token_id
    if pad_id is None or pad_id == tokenizer.eos_token_id or pad_id != tokenizer.pad_token_id:
        raise ValueError(
            f"the reward model needs config.pad_token_id set to the tokenizer's pad token and different "
            f"from EOS (pad {pad_id}, tokenizer pad {tokenizer.pad_token_id}, eos {tokenizer.eos_token_id}); "
            "load it with ppo_edu.lm.load_reward_model"
        )
    if getattr(model.config, "num_labels", 1) != 1:
        raise ValueError(f"a reward model has one output, this one has num_labels={model.config.num_labels}")
    if device is None:
        device = next(model.parameters()).device
    device = require_device(device)
    encoded = encode_for_reward(tokenizer, texts, _context_length(model), truncate)
    scores = []
    for start in range(0, len(encoded), batch_size):
        ids, mask = pad_right(encoded[start:start + batch_size], pad_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores.append(logits.squeeze(-1).float().cpu())
    if not scores:
        return torch.zeros(0)
    return torch.cat(scores)


def reward_fn_from_model(model, tokenizer, device=None, batch_size: int = 64, truncate: bool = False) -> RewardFn:
    """A reward function ``texts -> (B,)`` float32 CPU tensor from a reward model (see :func:`reward_model_scores`).

    Scoring runs without gradients and in eval mode (dropout off); the model's own
    train/eval mode is restored afterwards. Empty texts raise ValueError; texts longer
    than the context raise, or are truncated with ``truncate=True``.
    """
    batch_size = require_count("batch_size", batch_size)
    if device is not None:
        model.to(require_device(device))

    def reward_fn(texts: list[str]) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return reward_model_scores(model, tokenizer, texts, device, batch_size, truncate)
        finally:
            model.train(was_training)

    return reward_fn


def _positive_index(config, positive_label: str | None) -> int:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if positive_label is not None:
        for idx, label in id2label.items():
            if label == positive_label:
                return idx
        raise ValueError(f"label {positive_label!r} not among the classifier's labels {id2label}")
    for idx, label in id2label.items():
        if label.lower().startswith("pos"):
            return idx
    if config.num_labels == 2:
        return 1  # LABEL_0/LABEL_1 convention: 1 = positive (IMDB's label 1 is positive)
    raise ValueError(f"cannot tell which of the labels {id2label} is positive; pass positive_label=")


def sentiment_reward_fn(name: str = "lvwerra/distilbert-imdb", device="cpu", batch_size: int = 32,
                        positive_label: str | None = None, max_length: int = 512,
                        revision: str | None = None) -> RewardFn:
    """Reward = the positive-class logit of a sentiment classifier (the seed's classifier,
    read as a logit as TRL's sentiment examples did; the seed's code read its probability).

    ``name`` is a hub id (Colab: ``lvwerra/distilbert-imdb``, a DistilBERT fine-tuned on
    IMDB) or a local directory. The positive class is the label starting with "pos"
    (case-insensitive; ``POSITIVE`` for that model), else index 1 of two. Texts are
    truncated to ``max_length`` tokens (an integer >= 1; the tokenizer's own limit, if lower,
    applies too: documented truncation, the classifier's limit).
    ``revision`` (hub ids only) pins a branch, tag, commit or pull request of the hub repo;
    see the note on safetensors below. Returns ``texts -> (B,)`` float32 CPU tensor.

    Safetensors and ``lvwerra/distilbert-imdb``: weights load with ``use_safetensors=True``
    only. When this was last checked, that repo's ``main`` branch had only a pickled
    ``pytorch_model.bin``; its ``model.safetensors`` exists in the Hugging Face converter
    bot's pull request on the hub (``refs/pr/5``). With the default ``revision=None``
    (``main``), ``transformers`` finds that conversion pull request by itself and loads
    from it (``auto_conversion`` in ``transformers.modeling_utils``; this needs network
    access and is skipped offline or with ``DISABLE_SAFETENSORS_CONVERSION=1``, and if no
    such pull request existed it would ask the hub to open one). ``revision="refs/pr/5"``
    names that branch explicitly. Either way nothing pickled is ever loaded.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ppo_edu.lm.models import _from_pretrained, resolve

    device = require_device(device)
    batch_size = require_count("batch_size", batch_size)
    # here, not at the first scoring: 0 failed there with a reshape error, -1 with OverflowError
    max_length = require_count("max_length", max_length)
    source = resolve(name, tiny_dir=None)  # "tiny" is no classifier: use reward_fn_from_model
    hub = {}
    if revision is not None:
        if Path(source).is_dir():
            raise ValueError(f"revision={revision!r} applies to hub ids, not to the local directory {source}")
        hub["revision"] = revision
    tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer", **hub)
    model, loading = _from_pretrained(AutoModelForSequenceClassification, source, "sentiment classifier",
                                      output_loading_info=True, **hub)
    # A language model (gpt2, the tiny LM) loaded as a classifier gets a classification head at
    # random: its "reward" is noise. The head is what lies outside the trunk (base_model_prefix).
    trunk = model.base_model_prefix + "."
    missing = sorted(key for key in loading.get("missing_keys") or () if not key.startswith(trunk))
    if missing:
        raise ValueError(f"{name!r} is not a trained sentiment classifier: its checkpoint has no weights for "
                         f"{', '.join(missing)}, which transformers would initialise at random. Use a "
                         "fine-tuned classifier (lvwerra/distilbert-imdb), or for a scalar reward model "
                         "ppo_edu.rlhf.setups.load_reward_fn / ppo_edu.lm.reward_fn_from_model")
    model.to(device).eval()
    positive = _positive_index(model.config, positive_label)
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    # what the tokenizer returns that the classifier takes (some tokenizers add token_type_ids,
    # which DistilBERT's forward() does not accept)
    takes = set(inspect.signature(model.forward).parameters)

    def reward_fn(texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                # split_special_tokens: text that spells "[SEP]" is characters, not the classifier's token
                enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                max_length=limit, return_tensors="pt", split_special_tokens=True).to(device)
                logits = model(**{k: v for k, v in enc.items() if k in takes}).logits
                out.append(logits[:, positive].float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    return reward_fn


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(texts) -> np.ndarray:
    """VADER's compound sentiment score of each text, in [-1, 1] (float64, shape ``(B,)``).

    The rule-based lexicon scorer of Hutto & Gilbert (2014) from the installed
    ``vaderSentiment`` wheel. An empty text scores 0 (VADER's neutral), not an error: as a
    judge it must accept any string a policy writes. ``texts`` is a list (or other iterable)
    of ``str``; anything else in it (``None``, a number, token ids) is a TypeError naming its
    index, where VADER failed with "'NoneType' object is not iterable".
    """
    texts = text_list("texts", texts)  # an empty string is fine: it scores 0
    analyzer = _vader()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)
