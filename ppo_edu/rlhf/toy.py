"""Tiny, randomly initialised stand-ins for the tests (``tests/``; the exercise checkers and
``benchmarks/fullsize_gpt2.py`` build their own inputs and do not use them).

:func:`toy_tokenizer` is a byte-level BPE trained in a second on a few sentences, with
``<|endoftext|>`` as BOS/EOS and a *distinct* ``<|pad|>``; :func:`toy_lm` is a
``GPT2LMHeadModel`` of about 37,000 parameters. They exercise exactly the code paths
the real models use (``save_pretrained`` -> ``from_pretrained`` included), in milliseconds.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

TOY_TEXT = [
    "the movie was great and the acting was wonderful",
    "a dull, boring film with a terrible plot",
    "i loved every minute of this beautiful story",
    "the worst film of the year, awful and slow",
    "funny, warm and surprisingly moving",
    "not bad, but not good either",
]


def toy_tokenizer(vocab_size: int = 300, pad_token: str | None = "<|pad|>"):
    """A byte-level BPE ``PreTrainedTokenizerFast``; ``pad_token=None`` leaves it without one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>"] + ([pad_token] if pad_token else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TOY_TEXT, trainer=trainer)
    kwargs = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    if pad_token:
        kwargs["pad_token"] = pad_token
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def toy_config(tokenizer, n_positions: int = 64, n_embd: int = 32, n_layer: int = 2,
               n_head: int = 2, **kwargs) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **kwargs,
    )


def toy_lm(tokenizer, seed: int = 0, **config_kwargs) -> GPT2LMHeadModel:
    """A randomly initialised tiny ``GPT2LMHeadModel`` for ``tokenizer`` (dropout off: eval mode)."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(toy_config(tokenizer, **config_kwargs)).eval()


def toy_reward_model(tokenizer, seed: int = 1, **config_kwargs) -> GPT2ForSequenceClassification:
    """A randomly initialised tiny ``GPT2ForSequenceClassification`` with one label."""
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(toy_config(tokenizer, num_labels=1, **config_kwargs)).eval()


def eos_prone_lm(tokenizer, strength: float = 1.4, seed: int = 0, **config_kwargs) -> GPT2LMHeadModel:
    """A toy LM that ends responses early and at random (EOS logit about ``3 * strength``,
    give or take ``strength``: the layer-norm bias of 3 plus a unit-variance term).

    Its output embeddings are untied and the final layer norm gets a bias along one hidden
    dimension that only the EOS row of the LM head reads, so some responses stop after a
    few tokens and others run to the limit: what EOS handling must be tested on.
    """
    lm = toy_lm(tokenizer, seed=seed, tie_word_embeddings=False, **config_kwargs)
    with torch.no_grad():
        lm.transformer.ln_f.bias[0] = 3.0
        lm.lm_head.weight[:, 0] = 0.0
        lm.lm_head.weight[tokenizer.eos_token_id] = 0.0
        lm.lm_head.weight[tokenizer.eos_token_id, 0] = strength
    return lm
