"""Loading the language model and the reward model (stub: implementation in progress)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TINY_LM_DIR = DATA_DIR / "tiny-gpt2"
TINY_RM_DIR = DATA_DIR / "tiny-gpt2-rm"


def load_lm(name_or_dir="tiny", device="cpu"):
    raise NotImplementedError("load_lm: coming soon")


def load_reward_model(name_or_dir="tiny", device="cpu"):
    raise NotImplementedError("load_reward_model: coming soon")
