"""The tiny model's tokenizer: byte-level BPE, as GPT-2's, trained on the movie snippets.

Byte-level means every string is representable (unknown characters fall back to bytes),
so there is no unknown token in practice. Special tokens: ``<|endoftext|>`` (id 0) marks
both the start and the end of a text, as in GPT-2; ``<|pad|>`` (id 1) is padding only.
Keeping them distinct is what lets an attention mask drop padding without dropping a real
end-of-text (raised in a review of TRL PR #5303).
"""

from __future__ import annotations

from ppo_edu._checks import require_text_list

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int = 4096, model_max_length: int = 128,
                    with_pad: bool = True):
    """Byte-level BPE trained on ``texts``, wrapped as a ``transformers`` GPT-2 tokenizer.

    ``save_pretrained(dir)`` then ``AutoTokenizer.from_pretrained(dir)`` gives it back.
    Deterministic for the same texts and settings. ``with_pad=False`` leaves out
    ``<|pad|>``, like the hub's ``gpt2`` tokenizer (tests of the loaders use that).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    require_text_list("texts", texts)
    if not texts:
        raise ValueError("need at least one text to train a tokenizer")
    specials = [EOS_TOKEN, PAD_TOKEN] if with_pad else [EOS_TOKEN]
    minimum = 256 + len(specials)  # byte-level BPE starts from all 256 bytes
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(f"vocab_size must be an integer >= {minimum} (256 bytes + {len(specials)} "
                         f"special tokens), got {vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN, PAD_TOKEN] if with_pad else [EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN,
                                  unk_token=EOS_TOKEN, pad_token=PAD_TOKEN if with_pad else None,
                                  add_prefix_space=False)
    tokenizer.model_max_length = model_max_length
    return tokenizer
