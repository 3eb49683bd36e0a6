"""Reward functions (stub: implementation in progress)."""

from __future__ import annotations


def reward_fn_from_model(model, tokenizer, device="cpu", batch_size=64):
    raise NotImplementedError


def sentiment_reward_fn(name="lvwerra/distilbert-imdb", device="cpu"):
    raise NotImplementedError


def vader_compound(texts):
    raise NotImplementedError
