"""Small random models saved as Hugging Face directories, for tests (here and in lesson 6).

They exercise exactly the ``from_pretrained`` code the hub models go through, without
a network: ``save_pretrained(dir)`` then ``load_lm(dir)`` / ``load_reward_model(dir)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ppo_edu.lm.tokenizer import train_tokenizer

SAMPLE_TEXTS = [
    "A gripping drama with a standout performance.",
    "The worst film of the year.",
    "Funny and touching, a true delight.",
    "Boring and meandering, it never takes off.",
    "The acting is fine but the script is a mess.",
    "An uplifting, near masterpiece.",
] * 4


def small_tokenizer(texts: list[str] | None = None, vocab_size: int = 300, with_pad: bool = True):
    """A byte-level BPE tokenizer trained on a few texts: pad ``<|pad|>`` != eos ``<|endoftext|>``,
    or (``with_pad=False``) no pad token at all, like the hub's ``gpt2``."""
    return train_tokenizer(texts or SAMPLE_TEXTS, vocab_size=vocab_size, with_pad=with_pad)


def save_random_gpt2(path, tokenizer, *, n_embd: int = 32, n_layer: int = 2, n_head: int = 2,
                     n_positions: int = 64, kind: str = "lm", seed: int = 0) -> Path:
    """Save a randomly initialised GPT-2 (``kind="lm"``: GPT2LMHeadModel, ``"rm"``:
    GPT2ForSequenceClassification with one output) and ``tokenizer`` to ``path``.

    With a tokenizer without pad token (``small_tokenizer(with_pad=False)``) this is a
    miniature of the hub's ``gpt2``: no pad token, no ``pad_token_id``; loaders must add one.
    """
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    path = Path(path)
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=pad, num_labels=1)
    model = GPT2LMHeadModel(config) if kind == "lm" else GPT2ForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_random_sentiment_classifier(path, tokenizer, *, n_layers: int = 1, max_position_embeddings: int = 128,
                                     seed: int = 0) -> Path:
    """Save a randomly initialised miniature of ``lvwerra/distilbert-imdb`` and ``tokenizer`` to
    ``path``: a ``DistilBertForSequenceClassification`` (width 32) with two labels, NEGATIVE and
    POSITIVE, named in its config as the hub model's are."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    path = Path(path)
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=n_layers, n_heads=2,
                              max_position_embeddings=max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
                              num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                              label2id={"NEGATIVE": 0, "POSITIVE": 1})
    DistilBertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class StandInSplit:
    """What :func:`ppo_edu.lm.load_reviews` uses of a ``datasets`` split, over a list of row
    dicts: ``len``, ``select(indices)`` and ``split[column]`` (a list), for tests and
    ``tools/colab_rehearsal.py``'s stand-in for IMDB."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, indices) -> StandInSplit:
        return StandInSplit([self.rows[i] for i in indices])

    def __getitem__(self, column: str) -> list:
        return [row[column] for row in self.rows]
