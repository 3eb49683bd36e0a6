"""Loading the policy's language model and the reward model, offline or from the hub.

Both loaders take ``"tiny"`` (the models shipped in ``ppo_edu/data/``, trained on the
movie snippets; what CI and an offline laptop use), a hub id such as ``"gpt2"`` (Colab),
or a local directory written by ``save_pretrained``. Every path goes through the same
``from_pretrained`` code, so testing with local directories tests the hub path too.

Padding: the returned tokenizer always has a pad token *different from* its EOS token.
The hub's ``gpt2`` has no pad token and the usual workaround, ``pad_token = eos_token``,
makes "mask the padding" also mask every real ``<|endoftext|>`` (a review of TRL PR #5303): the
policy never learns to stop, and a sequence-classification reward model, which reads the
score at the last non-pad token, reads it at the wrong place. So for such a tokenizer we
add a dedicated ``<|pad|>`` token and resize the model's embeddings by one row. As an input
the new row only ever sits under a zero attention mask; GPT-2 ties its output layer to the
embeddings, so the row is also the pad token's logit. transformers starts it at the mean of
the other rows (plus noise of 1e-9 times their covariance), which makes that logit the mean
logit, and sampling at any temperature picks the pad with probability at most about
1/(V + 1) per token (Jensen), rarely but not never. The tokenizer pads on the right; set
``tokenizer.padding_side = "left"`` yourself for batched generation.

Safety: weights load from safetensors only (``use_safetensors=True``; a local directory
with only ``pytorch_model.bin`` is refused with a message saying so) and never with
``trust_remote_code``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ppo_edu._checks import require_device

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TINY_LM_DIR = DATA_DIR / "tiny-gpt2"
"""The shipped tiny GPT-2 (``GPT2LMHeadModel``) and its byte-level BPE tokenizer."""
TINY_RM_DIR = DATA_DIR / "tiny-gpt2-rm"
"""The shipped reward model (``GPT2ForSequenceClassification``, one output)."""
PAD_TOKEN = "<|pad|>"
_REBUILD = {  # the scripts write to runs/ unless told where the shipped directory is
    TINY_LM_DIR: "python tools/train_tiny_lm.py --out ppo_edu/data/tiny-gpt2",
    TINY_RM_DIR: "python tools/train_reward_model.py --lm ppo_edu/data/tiny-gpt2 --out ppo_edu/data/tiny-gpt2-rm",
}


def resolve(name_or_dir, tiny_dir: Path | None) -> str:
    """``"tiny"`` -> the shipped directory; an existing directory -> itself; else a hub id.

    Anything that looks like a filesystem path (a ``Path``, or a string starting with
    ``/``, ``.`` or ``~``, or holding more than one ``/`` or a backslash) must exist:
    a missing directory is a FileNotFoundError here, not a confusing hub lookup later. An
    existing file (say ``.../tiny-gpt2/model.safetensors``) is a NotADirectoryError that
    says to pass the folder holding ``config.json``.
    """
    if isinstance(name_or_dir, str) and name_or_dir == "tiny":
        if tiny_dir is None:
            raise ValueError("'tiny' names a shipped LM or reward model; this loader has no tiny model")
        path = tiny_dir
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the shipped model directory {path} is missing or incomplete (needs config.json "
                f"and model.safetensors). Rebuild it with `{_REBUILD.get(tiny_dir, 'the tools/ scripts')}`."
            )
        return str(path)
    if not isinstance(name_or_dir, (str, os.PathLike)) or not str(name_or_dir).strip():
        raise ValueError(f"name_or_dir must be 'tiny', a hub id or a directory, got {name_or_dir!r}")
    text = os.fspath(name_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a directory but has no config.json: not a saved model")
        return str(path)
    if path.exists():  # a file: "model directory ... does not exist" was false
        hint = (f" ({path.parent} holds one)" if (path.parent / "config.json").is_file() else "")
        raise NotADirectoryError(
            f"{text!r} is a file, not a model directory: pass the folder that holds config.json "
            f"and the weights{hint}")
    looks_like_path = (isinstance(name_or_dir, os.PathLike) or text.startswith(("/", ".", "~"))
                       or text.count("/") > 1 or "\\" in text)
    if looks_like_path:
        raise FileNotFoundError(f"model directory {text!r} does not exist")
    return text  # a hub id such as "gpt2" or "lvwerra/distilbert-imdb"


def ensure_pad_token(model, tokenizer) -> None:
    """Give ``tokenizer`` a pad token distinct from EOS (adding ``<|pad|>`` if needed) and tell ``model``.

    Adding one resizes ``model``'s embeddings, and transformers draws the new row from the
    global torch RNG (see :func:`load_lm`)."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    embeddings = model.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.pad_token_id == tokenizer.eos_token_id:  # pragma: no cover - guarded above
        raise AssertionError("pad token must differ from EOS")


class TanhGELU(torch.nn.Module):
    """GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as one torch
    kernel (``gelu(x, approximate="tanh")``); the same function as GPT-2's ``gelu_new``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


def use_fused_gelu(model: torch.nn.Module) -> int:
    """Swap ``model``'s ``NewGELUActivation`` modules (GPT-2's ``gelu_new``) for :class:`TanhGELU`,
    in place; returns how many were swapped. Both compute the same function, but
    ``transformers`` writes ``gelu_new`` out in five tensor operations, each with its own
    backward, and on the tiny GPT-2 on a 2-core CPU that was about a sixth of a PPO step's
    time (lesson 6). The outputs differ by float rounding only. Every model the loaders here
    return has had this done; ``config.activation_function`` is left as it was, so a saved
    model is the same model."""
    from transformers.activations import NewGELUActivation

    swapped = 0
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, TanhGELU())
                swapped += 1
    return swapped


_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def _from_pretrained(loader, source: str, what: str, **kwargs):
    local = Path(source).is_dir()
    if what != "tokenizer":  # weights: safetensors only (a tokenizer has no weights, and would save the flag)
        kwargs["use_safetensors"] = True
        if local and not any((Path(source) / name).is_file() for name in _SAFETENSORS):
            others = [name for name in _PICKLED if (Path(source) / name).is_file()]
            found = f"it has {', '.join(others)}" if others else "it has no weights file at all"
            raise FileNotFoundError(
                f"could not load the {what} from the local directory {source}: it has no model.safetensors "
                f"({found}). This course loads weights from safetensors only, never from pickled "
                "pytorch_model.bin files, which can run code when loaded. If you trust the file, load it "
                "once yourself with from_pretrained(dir, use_safetensors=False) and save_pretrained(dir) "
                "writes model.safetensors beside it."
            )
    from safetensors import SafetensorError

    try:
        loaded = loader.from_pretrained(source, trust_remote_code=False, **kwargs)
        if what != "tokenizer":  # (model, loading info) with output_loading_info=True
            use_fused_gelu(loaded[0] if isinstance(loaded, tuple) else loaded)
        return loaded
    except SafetensorError as exc:  # a truncated or corrupt file: name it
        raise OSError(f"could not load the {what} from {source}: its model.safetensors is damaged "
                      f"({exc}); save or download it again") from exc
    except OSError as exc:
        if local:
            raise OSError(f"could not load the {what} from the local directory {source}: {exc}") from exc
        hint = "A hub id needs network access (on Colab it works); offline, use 'tiny' or a local directory."
        if what != "tokenizer" and "safetensors" in str(exc):
            hint = (f"The hub repo {source!r} seems to have no model.safetensors on the revision asked for, "
                    "and this course never loads pickled weights. If Hugging Face's converter bot has opened "
                    "a pull request with a safetensors copy, load that revision, revision='refs/pr/N' (N from "
                    "the repo's Community tab; sentiment_reward_fn and load_reward_fn take it).")
        raise OSError(f"could not load the {what} {source!r}: {exc}\n{hint}") from exc


# Files that carry a tokenizer's vocabulary (fast, GPT-2/BPE, WordPiece, SentencePiece).
_VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.model",
                     "sentencepiece.bpe.model")


def load_tokenizer(name_or_dir="tiny", tiny_dir: Path = TINY_LM_DIR):
    """The tokenizer of a model (right padding, no pad token added: see :func:`load_lm`)."""
    from transformers import AutoTokenizer

    source = resolve(name_or_dir, tiny_dir)
    if Path(source).is_dir() and not any((Path(source) / name).is_file() for name in _VOCABULARY_FILES):
        # transformers would build a tokenizer with an empty vocabulary from config.json alone:
        # every text becomes [], generation returns '' and the perplexity is huge, without an error
        raise FileNotFoundError(
            f"{source} has a model but no tokenizer files (none of {', '.join(_VOCABULARY_FILES)}). "
            "Save the tokenizer next to the model: tokenizer.save_pretrained(directory)")
    tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer")
    if len(tokenizer.get_vocab()) <= len(tokenizer.all_special_tokens):
        raise ValueError(f"the tokenizer loaded from {source} has no vocabulary beyond its special tokens")
    tokenizer.padding_side = "right"
    return tokenizer


def load_lm(name_or_dir="tiny", device="cpu", dtype: torch.dtype | None = torch.float32):
    """``(model, tokenizer)`` of a causal LM: ``"tiny"`` (shipped), ``"gpt2"`` (hub) or a directory.

    The model is a ``transformers`` ``AutoModelForCausalLM`` (``GPT2LMHeadModel`` for both
    the tiny model and ``gpt2``) on ``device`` in eval mode; the tokenizer has a pad token
    that is not EOS (see the module docstring).

    Randomness: for a model without a pad token (the hub's ``gpt2``, the Colab path),
    :func:`ensure_pad_token` adds one, and transformers' ``resize_token_embeddings`` draws
    the new embedding row's noise from the *global* torch RNG, unseeded here: that row (and
    so the pad token's logit) differs slightly from load to load unless the caller seeds
    torch first, and the load advances the caller's global RNG. The shipped ``"tiny"``
    models already have their pad token: loading them draws nothing.
    """
    from transformers import AutoModelForCausalLM

    device = require_device(device)  # before loading: a missing GPU is found in a second
    source = resolve(name_or_dir, TINY_LM_DIR)
    tokenizer = load_tokenizer(source)
    model = _from_pretrained(AutoModelForCausalLM, source, "language model", dtype=dtype)
    ensure_pad_token(model, tokenizer)
    return model.to(device).eval(), tokenizer


def load_reward_model(name_or_dir="tiny", device="cpu", dtype: torch.dtype | None = torch.float32):
    """``(model, tokenizer)`` of a reward model with one output per sequence.

    ``"tiny"`` is the shipped Bradley-Terry reward model; a directory or hub id loads with
    ``AutoModelForSequenceClassification`` and ``num_labels=1`` (for ``"gpt2"`` that is a
    ``GPT2ForSequenceClassification`` with a fresh, untrained score head, the starting point
    for training a reward model). ``config.pad_token_id`` is set (and differs from EOS), so
    the model reads each score at the last real token of a right-padded batch. As in
    :func:`load_lm`, a model without a pad token (``"gpt2"``) gets a new embedding row drawn
    from the unseeded global torch RNG, and so does a fresh score head.
    """
    from transformers import AutoModelForSequenceClassification

    device = require_device(device)
    source = resolve(name_or_dir, TINY_RM_DIR)
    tokenizer = load_tokenizer(source, TINY_RM_DIR)
    model = _from_pretrained(AutoModelForSequenceClassification, source, "reward model",
                             num_labels=1, dtype=dtype)
    ensure_pad_token(model, tokenizer)
    return model.to(device).eval(), tokenizer
