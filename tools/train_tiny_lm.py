#!/usr/bin/env python
"""Train the offline "SFT model": a byte-level BPE tokenizer and a tiny GPT-2 on the movie snippets.

    python tools/train_tiny_lm.py                  # tokenizer + LM -> runs/tiny-gpt2/ (scratch)
    python tools/train_tiny_lm.py --threads 2      # faster on an idle machine
    python tools/train_tiny_lm.py --out ppo_edu/data/tiny-gpt2   # replace the shipped model

Time: the shipped model's run took 47 minutes (2,841 s, recorded in its
``training_log.json``) on one thread of a 2-core CPU.

Where it writes: by default a scratch directory, ``runs/tiny-gpt2/`` (git-ignored), so a
rebuild never silently replaces the shipped model. The shipped model lives in
``ppo_edu/data/tiny-gpt2/``; to replace it pass ``--out ppo_edu/data/tiny-gpt2`` and then
rebuild the reward model from it. A different torch build (version, CPU/GPU, BLAS) gives
a slightly different model, so the numbers lessons 5 and 6 assert about the shipped
models (lesson 5 checks the reward model's test accuracy to three decimals) would then
need updating.

Both are trained on the *train* split of the bundled snippets only (``ppo_edu.lm.data``);
the validation split picks the best epoch, the test split gives the reported perplexity.
Everything is seeded: the same command gives the same model with the same torch build and
the same transformers, tokenizers and numpy versions (the log records them; the shipped
model's log, from an earlier version of this script, records torch only).
The loop is this script's own (``ppo_edu.lm.training.sft_train`` is the lesson's short
version of it, with the same loss and packing): 12 epochs from random weights, AdamW
(betas 0.9, 0.95; weight decay 0.1 on matrices only) at peak lr 4e-3 with 100 linear
warmup steps and a cosine decay to 10% over all epochs, dropout 0.05, gradients clipped
at norm 1, the training blocks re-shuffled and re-packed every epoch, and the epoch with
the lowest validation perplexity kept.

Tokenizer: byte-level BPE (``tokenizers``), GPT-2's pre-tokenisation (no prefix space),
specials ``<|endoftext|>`` (id 0: BOS, EOS and UNK, as in GPT-2) and ``<|pad|>`` (id 1:
padding only, never equal to EOS, so masking padding can never mask a real end of text).

LM: ``transformers.GPT2LMHeadModel`` with a small config, trained like GPT-2: the
shuffled snippets, each followed by ``<|endoftext|>``, are concatenated into one stream
and cut into blocks of ``n_positions`` tokens (no padding). A snippet that starts after
``<|endoftext|>`` is how the model learns what a review's first words look like, and the
``<|endoftext|>`` after each snippet is how it learns to stop.

The output directory is a Hugging Face model directory (``config.json``,
``model.safetensors``, ``generation_config.json``, ``tokenizer.json``,
``tokenizer_config.json``) plus ``training_log.json`` (settings, per-epoch losses,
validation and test perplexity, samples, timings).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _tool_checks import add_config_options, library_versions, out_dir_problem

from ppo_edu.lm.data import load_snippets
from ppo_edu.lm.reward import text_ids
from ppo_edu.lm.tokenizer import train_tokenizer
from ppo_edu.lm.training import generate, packed_blocks, text_nll


@dataclass
class LMConfig:
    out: str = str(ROOT / "runs" / "tiny-gpt2")
    """where to write; the shipped model is ppo_edu/data/tiny-gpt2 (pass it to replace that)."""
    seed: int = 0
    """seeds torch and numpy (>= 0)."""
    threads: int = 1
    """torch CPU threads; 1 is reproducible and, on a busy 2-core machine, fastest."""
    vocab_size: int = 4096
    """BPE vocabulary including the two special tokens."""
    n_positions: int = 128
    """context length; every snippet fits (the longest, with its two <|endoftext|>, needs 86)."""
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.05
    epochs: int = 12
    batch_size: int = 8
    """blocks of n_positions tokens per optimiser step."""
    lr: float = 4e-3
    min_lr_ratio: float = 0.1
    """the cosine schedule decays the learning rate to lr times this."""
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    """the gradient norm is clipped to this."""
    max_steps_per_epoch: int = 0
    """0 = whole epochs; a small number makes a quick smoke test."""


SHIPPED = ROOT / "ppo_edu" / "data" / "tiny-gpt2"


def check_config(cfg: LMConfig) -> str | None:
    """The first setting that cannot work, as a message naming its option, or None."""
    at_least = {"--epochs": (cfg.epochs, 1), "--batch-size": (cfg.batch_size, 1), "--threads": (cfg.threads, 1),
                "--n-layer": (cfg.n_layer, 1), "--n-head": (cfg.n_head, 1), "--n-embd": (cfg.n_embd, 1),
                "--n-positions": (cfg.n_positions, 2), "--vocab-size": (cfg.vocab_size, 258),
                "--warmup-steps": (cfg.warmup_steps, 0), "--max-steps-per-epoch": (cfg.max_steps_per_epoch, 0)}
    for option, (value, lowest) in at_least.items():
        if value < lowest:
            return f"{option} must be >= {lowest}, got {value}"
    if cfg.n_embd % cfg.n_head:
        return f"--n-embd ({cfg.n_embd}) must be divisible by --n-head ({cfg.n_head})"
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        return f"--lr must be a finite number > 0, got {cfg.lr}"
    if not 0 <= cfg.min_lr_ratio <= 1:
        return f"--min-lr-ratio must be in [0, 1], got {cfg.min_lr_ratio}"
    if not 0 <= cfg.dropout < 1:
        return f"--dropout must be in [0, 1), got {cfg.dropout}"
    if not (math.isfinite(cfg.grad_clip) and cfg.grad_clip > 0):
        return f"--grad-clip must be a finite number > 0, got {cfg.grad_clip}"
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        return f"--weight-decay must be a finite number >= 0, got {cfg.weight_decay}"
    if cfg.seed < 0:
        return f"--seed must be >= 0 (it seeds numpy), got {cfg.seed}"
    return out_dir_problem(cfg.out, writes="GPT2LMHeadModel")


def lr_at(step: int, total: int, cfg: LMConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(parser, LMConfig)
    cfg = LMConfig(**vars(parser.parse_args(argv)))
    problem = check_config(cfg)
    if problem:
        parser.error(problem)
    if Path(cfg.out).resolve() == SHIPPED.resolve():
        print(f"writing into the shipped model directory {SHIPPED}: it will be replaced", flush=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    t0 = time.time()
    train_texts, _ = load_snippets("train")
    val_texts, _ = load_snippets("validation")
    test_texts, _ = load_snippets("test")
    tokenizer = train_tokenizer(train_texts, cfg.vocab_size, model_max_length=cfg.n_positions)
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert eos_id != pad_id
    # text_ids: a snippet that spelled "<|endoftext|>" would be characters, not a document break
    # (none of the bundled ones does: the ids are the same either way)
    enc = lambda texts: [list(ids) for ids in text_ids(tokenizer, texts)]
    train_ids, val_ids, test_ids = enc(train_texts), enc(val_texts), enc(test_texts)
    longest = max(len(s) + 2 for s in train_ids + val_ids + test_ids)
    if longest > cfg.n_positions:
        raise SystemExit(f"a snippet needs {longest} positions > n_positions={cfg.n_positions}")
    n_train_tokens = sum(len(s) + 1 for s in train_ids)
    t_tok = time.time() - t0
    print(f"tokenizer: vocab {len(tokenizer)}, {n_train_tokens} train tokens, "
          f"{n_train_tokens / sum(map(len, train_texts)):.3f} tokens/char ({t_tok:.1f}s)", flush=True)

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id, tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    steps_per_epoch = (n_train_tokens // cfg.n_positions) // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {cfg.batch_size} blocks of --n-positions {cfg.n_positions} tokens is more "
                         f"than the {n_train_tokens} training tokens hold: an epoch would have no step")
    total_steps = steps_per_epoch * cfg.epochs
    print(f"model: {n_params / 1e6:.2f}M parameters, {total_steps} steps "
          f"({cfg.epochs} epochs x {steps_per_epoch})", flush=True)

    history, best = [], (float("inf"), None)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        blocks = packed_blocks(train_ids, eos_id, cfg.n_positions, rng)
        losses = []
        for b in range(steps_per_epoch):
            x = blocks[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        nll, count = text_nll(model, tokenizer, val_texts)
        if not math.isfinite(nll):
            raise SystemExit(f"the validation loss is {nll / count} after epoch {epoch + 1}: training diverged "
                             f"(last training loss {losses[-1]}); try a lower --lr")
        val_ppl = math.exp(nll / count)
        row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
               "val_loss": nll / count, "val_ppl": val_ppl, "elapsed_s": time.time() - t0}
        history.append(row)
        print(json.dumps(row), flush=True)
        if val_ppl < best[0]:
            best = (val_ppl, {k: v.detach().clone() for k, v in model.state_dict().items()})

    model.load_state_dict(best[1])
    nll, count = text_nll(model, tokenizer, test_texts)
    test_ppl = math.exp(nll / count)
    test_chars = sum(len(t) for t in test_texts) + len(test_texts)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    samples = generate(model, tokenizer, [""] * 8, max_new_tokens=48, seed=cfg.seed)
    prompted = generate(model, tokenizer, ["This movie", "The acting is", "A film that", "I can't recommend"],
                        max_new_tokens=48, seed=cfg.seed)
    log = {
        "settings": asdict(cfg) | {"out": str(out)},
        "n_params": n_params,
        "train_tokens": n_train_tokens,
        "best_epoch": int(np.argmin([h["val_ppl"] for h in history]) + 1),
        "val_ppl": best[0],
        "test_ppl": test_ppl,
        "test_bits_per_char": nll / math.log(2) / test_chars,
        "history": history,
        "samples": samples,
        "prompted_samples": prompted,
        "seconds": time.time() - t0,
        "cpu_seconds": time.process_time(),
        **library_versions(),
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=1, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(
        "# tiny-gpt2: the ppo-edu course's offline SFT model\n\n"
        f"`GPT2LMHeadModel` ({n_params / 1e6:.2f}M parameters: {cfg.n_layer} layers, {cfg.n_head} heads, "
        f"n_embd {cfg.n_embd}, context {cfg.n_positions}) with a byte-level BPE tokenizer of "
        f"{len(tokenizer)} tokens (`<|endoftext|>` = BOS/EOS, `<|pad|>` = padding only), both trained on the "
        "8,484 training sentences of the VADER movie-review snippets (ppo_edu/data/PROVENANCE.md).\n\n"
        f"Held-out perplexity: {test_ppl:.1f} per token on the 1,061 test sentences "
        f"(validation {best[0]:.1f}, best epoch {log['best_epoch']} of {cfg.epochs}).\n\n"
        f"Trained by `python tools/train_tiny_lm.py` in {(time.time() - t0) / 60:.0f} minutes on {cfg.threads} "
        f"CPU thread{'s' if cfg.threads > 1 else ''}; recipe in ppo_edu/data/PROVENANCE.md, settings, "
        "curves and samples in training_log.json. "
        "To rebuild the shipped copy: `python tools/train_tiny_lm.py --out ppo_edu/data/tiny-gpt2` (without "
        "`--out` it writes to runs/tiny-gpt2/). "
        "Load: `ppo_edu.lm.load_lm(\"tiny\")` or `AutoModelForCausalLM.from_pretrained(dir)`.\n"
    )
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"test perplexity {test_ppl:.2f} (val {best[0]:.2f}); wrote {out} ({size / 1e6:.2f} MB) "
          f"in {log['seconds'] / 60:.1f} min", flush=True)
    for s in samples + prompted:
        print("  >", s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
