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
