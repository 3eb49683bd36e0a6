#!/usr/bin/env python
"""Train the offline reward model: Bradley-Terry on human-rated movie snippets.

    python tools/train_reward_model.py            # from ppo_edu/data/tiny-gpt2 -> runs/tiny-gpt2-rm (scratch)
    python tools/train_reward_model.py --epochs 1 --out /tmp/rm
    python tools/train_reward_model.py --out ppo_edu/data/tiny-gpt2-rm   # replace the shipped model

Time: the shipped reward model's run took 24 minutes (1,421 s, recorded in its
``training_log.json``) on one thread of a 2-core CPU.

Where it writes: by default a scratch directory, ``runs/tiny-gpt2-rm/`` (git-ignored), so
a rebuild never silently replaces the shipped reward model in
``ppo_edu/data/tiny-gpt2-rm/``; pass ``--out ppo_edu/data/tiny-gpt2-rm`` to replace it. A
different torch build gives a slightly different model, and lesson 5 asserts the shipped
model's test accuracy to three decimals (lesson 6's numbers depend on it too).

A ``GPT2ForSequenceClassification`` with one output, initialised from the tiny LM (its
transformer; the score head starts at random), is trained with the Bradley-Terry loss
``-log sigmoid(r(chosen) - r(rejected))`` on every pair of *train* snippets inside each
minibatch of 64 whose mean human ratings differ by at least ``--margin``.

The recipe, exactly: for each of ``--epochs`` epochs (5) this script calls
``ppo_edu.lm.training.train_reward_model(..., epochs=1, seed=seed + epoch)`` once. Each
call builds a new AdamW optimiser (weight decay 0.01 on matrices; its moment estimates
start from zero every epoch) and a new learning-rate schedule: a cosine decay from
``--lr`` (3e-4) to 10% of it over that epoch's 132 steps (8,484 snippets // 64), so the
rate jumps back to 3e-4 at the start of every epoch; the ``--warmup-steps`` (30) of
linear warmup happen in the first epoch only (its cosine covers the remaining 102 steps).
Dropout 0.1. After each epoch the validation pairs (gap >= ``--eval-margin``) are scored;
the epoch with the best validation accuracy is kept (for the shipped model, epoch 5).
The reported numbers are on the *test* split: pairwise accuracy over all test pairs with
a gap >= 1, next to VADER's on the same pairs.
Seeded: the same command gives the same model with the same torch build and the same
transformers, tokenizers and numpy versions (the log records them, and the SHA-256 of the
starting LM's weights; the shipped model's log, from an earlier version of this script,
records torch only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
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

from ppo_edu.lm import bradley_terry as bt
from ppo_edu.lm.data import load_reviews, load_snippets
from ppo_edu.lm.models import TINY_LM_DIR, TINY_RM_DIR, ensure_pad_token, load_tokenizer
from ppo_edu.lm.reward import reward_model_scores, vader_compound
from ppo_edu.lm.training import reward_accuracy, train_reward_model


@dataclass
class RMConfig:
    lm: str = str(TINY_LM_DIR)
    """the language model to start from (its tokenizer comes along)."""
    out: str = str(ROOT / "runs" / "tiny-gpt2-rm")
    """where to write; the shipped reward model is ppo_edu/data/tiny-gpt2-rm (pass it to replace that)."""
    seed: int = 0
    """seeds torch and numpy (>= 0)."""
    threads: int = 1
    """torch CPU threads; 1 is reproducible and, on a busy 2-core machine, fastest."""
    margin: float = 1.0
    """train on pairs whose mean ratings differ by at least this (scale points on [-4, 4])."""
    eval_margin: float = 1.0
    """the validation and test accuracy count pairs whose mean ratings differ by at least this."""
    epochs: int = 5
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 30
    dropout: float = 0.1
    train_snippets: int = 0
    """0 = the whole train split; a number draws that many at random (seeded) for a quick smoke test."""


def check_config(cfg: RMConfig) -> str | None:
    """The first setting that cannot work, as a message naming its option, or None."""
    if cfg.epochs < 1:
        return f"--epochs must be >= 1 (one epoch is the shortest run that picks a best epoch), got {cfg.epochs}"
    if cfg.batch_size < 2:
        return f"--batch-size must be >= 2 (pairs are formed inside a batch), got {cfg.batch_size}"
    if cfg.threads < 1:
        return f"--threads must be >= 1, got {cfg.threads}"
    for option, value in (("--margin", cfg.margin), ("--eval-margin", cfg.eval_margin), ("--lr", cfg.lr)):
        if not (math.isfinite(value) and value > 0):
            return f"{option} must be a finite number > 0, got {value}"
    if cfg.warmup_steps < 0:
        return f"--warmup-steps must be >= 0, got {cfg.warmup_steps}"
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        return f"--weight-decay must be a finite number >= 0, got {cfg.weight_decay}"
    if cfg.seed < 0:
        return f"--seed must be >= 0 (it seeds numpy), got {cfg.seed}"
    lm = Path(cfg.lm)
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
               if not (lm / name).is_file()]
    if missing:  # the tokenizer files are copied into --out at the end, so --lm must be a local folder
        return f"--lm {cfg.lm} must be a local model directory; it has no {', '.join(missing)}"
    for split in ("validation", "test"):  # evaluated after every epoch and at the end
        try:
            bt.make_preference_pairs(load_snippets(split)[1], cfg.eval_margin)
        except ValueError as exc:
            return f"--eval-margin {cfg.eval_margin}: {exc} (in the {split} split)"
    if not 0 <= cfg.dropout < 1:
        return f"--dropout must be in [0, 1), got {cfg.dropout}"
    if cfg.train_snippets < 0 or cfg.train_snippets == 1:
        return f"--train-snippets must be 0 (all) or >= 2, got {cfg.train_snippets}"
    train_size = len(load_snippets("train")[0])
    if cfg.train_snippets > train_size:  # failed in load_reviews with a traceback
        return (f"--train-snippets {cfg.train_snippets}: the train split has only {train_size} snippets "
                "(0 = all of them)")
    return out_dir_problem(cfg.out, {"--lm, the language model this run starts from": cfg.lm,
                                     "the shipped language model": TINY_LM_DIR},
                           writes="GPT2ForSequenceClassification")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(parser, RMConfig)
    cfg = RMConfig(**vars(parser.parse_args(argv)))
    problem = check_config(cfg)
    if problem:
        parser.error(problem)
    if Path(cfg.out).resolve() == TINY_RM_DIR.resolve():
        print(f"writing into the shipped reward model directory {TINY_RM_DIR}: it will be replaced", flush=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    from transformers import GPT2ForSequenceClassification

    t0 = time.time()
    # --train-snippets: a seeded random subset (the split stores its positive half first, so a
    # head would be one-sided); 0 = all of it, in the stored order
    train_texts, train_r = load_reviews("snippets", "train", max_examples=cfg.train_snippets or None,
                                        seed=cfg.seed)
    val_texts, val_r = load_snippets("validation")
    test_texts, test_r = load_snippets("test")
    tokenizer = load_tokenizer(cfg.lm)
    lm_sha256 = hashlib.sha256((Path(cfg.lm) / "model.safetensors").read_bytes()).hexdigest()
    model = GPT2ForSequenceClassification.from_pretrained(
        cfg.lm, num_labels=1, use_safetensors=True, dtype=torch.float32,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
    )
    ensure_pad_token(model, tokenizer)
    model.config.id2label, model.config.label2id = {0: "reward"}, {"reward": 0}

    history, best = [], (-1.0, None, 0)
    for epoch in range(cfg.epochs):
        steps = train_reward_model(
            model, tokenizer, train_texts, train_r, margin=cfg.margin, epochs=1, batch_size=cfg.batch_size,
            lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps if epoch == 0 else 0,
            seed=cfg.seed + epoch, progress=False,
        )
        val = reward_accuracy(model, tokenizer, val_texts, val_r, cfg.eval_margin)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean([s["loss"] for s in steps if "loss" in s])),
               "train_batch_accuracy": float(np.mean([s["batch_accuracy"] for s in steps if "loss" in s])),
               "val_accuracy": val["accuracy"], "val_pearson_r": val["pearson_r"], "elapsed_s": time.time() - t0}
        history.append(row)
        print(json.dumps(row), flush=True)
        if val["accuracy"] > best[0]:
            best = (val["accuracy"], {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch + 1)
    model.load_state_dict(best[1])

    test = reward_accuracy(model, tokenizer, test_texts, test_r, cfg.eval_margin)
    pairs = bt.make_preference_pairs(test_r, cfg.eval_margin)
    vader_test = bt.pairwise_accuracy(vader_compound(test_texts), pairs)
    vader_val = bt.pairwise_accuracy(vader_compound(val_texts),
                                     bt.make_preference_pairs(val_r, cfg.eval_margin))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the LM's tokenizer, byte for byte
        shutil.copyfile(Path(cfg.lm) / name, out / name)
    # the scores only: reward_accuracy would also build the split's 23.8M preference pairs
    model.eval()
    with torch.no_grad():
        train_scores = reward_model_scores(model, tokenizer, train_texts).numpy()
    log = {
        "settings": asdict(cfg) | {"lm": str(cfg.lm), "out": str(out)},
        "best_epoch": best[2],
        "history": history,
        "val_accuracy": best[0],
        "vader_val_accuracy": vader_val,
        "test_accuracy": test["accuracy"],
        "test_pairs": test["pairs"],
        "test_pearson_r": test["pearson_r"],
        "vader_test_accuracy": vader_test,
        "vader_test_pearson_r": float(np.corrcoef(vader_compound(test_texts), test_r)[0, 1]),
        "train_snippets_used": len(train_texts),
        "train_positive_share": float(np.mean(np.asarray(train_r) > 0)),
        "train_score_mean": float(train_scores.mean()),
        "train_score_std": float(train_scores.std()),
        "seconds": time.time() - t0,
        "cpu_seconds": time.process_time(),
        **library_versions(),
        "lm_sha256": lm_sha256,
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    (out / "README.md").write_text(
        "# tiny-gpt2-rm: the ppo-edu course's offline reward model\n\n"
        "`GPT2ForSequenceClassification` with one output, initialised from tiny-gpt2 and trained with the "
        f"Bradley-Terry loss on pairs of training snippets whose mean human ratings differ by >= {cfg.margin:g} "
        "(VADER movie-review snippets, ppo_edu/data/PROVENANCE.md). Input: the text followed by "
        "`<|endoftext|>`; the score is read at that token (right padding with `<|pad|>`).\n\n"
        f"Held-out pairwise accuracy on the {test['pairs']:,} test pairs with a rating gap >= "
        f"{cfg.eval_margin:g}: **{test['accuracy']:.4f}** (VADER on the same pairs: {vader_test:.4f}; "
        f"chance 0.5). Pearson r with the mean rating: "
        f"{'undefined (constant scores)' if test['pearson_r'] is None else format(test['pearson_r'], '.3f')}.\n\n"
        f"Trained by `python tools/train_reward_model.py` in {(time.time() - t0) / 60:.0f} minutes on "
        f"{cfg.threads} CPU thread{'s' if cfg.threads > 1 else ''}; recipe in ppo_edu/data/PROVENANCE.md, "
        "log in training_log.json. "
        "To rebuild the shipped copy: `python tools/train_reward_model.py --out ppo_edu/data/tiny-gpt2-rm` "
        "(without `--out` it writes to runs/tiny-gpt2-rm/). "
        "Load: `ppo_edu.lm.load_reward_model(\"tiny\")`.\n"
    )
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"test pairwise accuracy (margin {cfg.eval_margin:g}, {test['pairs']} pairs): reward model "
          f"{test['accuracy']:.4f}, VADER {vader_test:.4f}; wrote {out} ({size / 1e6:.2f} MB) in "
          f"{log['seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
